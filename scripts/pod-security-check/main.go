// pod-security-check judges workloads the way the PodSecurity admission controller does, with
// its own code (k8s.io/pod-security-admission): the pod template is taken out of each object by
// the controller's extractor, the namespace's pod-security.kubernetes.io labels are resolved to
// a policy by its label parser, and the pod is evaluated by its policy checks at the enforce,
// audit and warn levels of that policy.
//
//	pod-security-check < objects.json
//	pod-security-check --version
//
// Input: a JSON array of Kubernetes objects (Namespaces and workloads: Pod, Deployment,
// StatefulSet, DaemonSet, ReplicaSet, Job, CronJob), decoded strictly (an unknown field is an
// error). Output: a JSON array with one verdict per workload. Exit status 0 when every object
// was judged, 1 on bad input.
package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime/debug"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/pod-security-admission/admission"
	"k8s.io/pod-security-admission/api"
	"k8s.io/pod-security-admission/policy"
)

type levelVerdict struct {
	Level   string   `json:"level"`
	Version string   `json:"version"`
	Allowed bool     `json:"allowed"`
	Reasons []string `json:"reasons"`
}

type verdict struct {
	Kind      string       `json:"kind"`
	Name      string       `json:"name"`
	Namespace string       `json:"namespace"`
	Enforce   levelVerdict `json:"enforce"`
	Audit     levelVerdict `json:"audit"`
	Warn      levelVerdict `json:"warn"`
}

func decode(raw json.RawMessage, into any) error {
	decoder := json.NewDecoder(bytes.NewReader(raw))
	decoder.DisallowUnknownFields()
	return decoder.Decode(into)
}

func typed(kind string) (runtime.Object, error) {
	switch kind {
	case "Pod":
		return &corev1.Pod{}, nil
	case "Deployment":
		return &appsv1.Deployment{}, nil
	case "StatefulSet":
		return &appsv1.StatefulSet{}, nil
	case "DaemonSet":
		return &appsv1.DaemonSet{}, nil
	case "ReplicaSet":
		return &appsv1.ReplicaSet{}, nil
	case "Job":
		return &batchv1.Job{}, nil
	case "CronJob":
		return &batchv1.CronJob{}, nil
	}
	return nil, fmt.Errorf("kind %q holds no pod template", kind)
}

func run(in io.Reader, out io.Writer) error {
	var objects []json.RawMessage
	if err := json.NewDecoder(in).Decode(&objects); err != nil {
		return fmt.Errorf("input is not a JSON array of objects: %w", err)
	}
	namespaces := map[string]map[string]string{}
	type workload struct {
		kind string
		obj  runtime.Object
	}
	var workloads []workload
	for i, raw := range objects {
		var head struct {
			Kind string `json:"kind"`
		}
		if err := json.Unmarshal(raw, &head); err != nil {
			return fmt.Errorf("object %d: %w", i, err)
		}
		if head.Kind == "Namespace" {
			ns := &corev1.Namespace{}
			if err := decode(raw, ns); err != nil {
				return fmt.Errorf("object %d (Namespace): %w", i, err)
			}
			namespaces[ns.Name] = ns.Labels
			continue
		}
		obj, err := typed(head.Kind)
		if err != nil {
			return fmt.Errorf("object %d: %w", i, err)
		}
		if err := decode(raw, obj); err != nil {
			return fmt.Errorf("object %d (%s): %w", i, head.Kind, err)
		}
		workloads = append(workloads, workload{head.Kind, obj})
	}
	evaluator, err := policy.NewEvaluator(policy.DefaultChecks(), nil)
	if err != nil {
		return err
	}
	// The admission controller's built-in defaults: privileged at the latest version.
	defaults := api.Policy{
		Enforce: api.LevelVersion{Level: api.LevelPrivileged, Version: api.LatestVersion()},
		Audit:   api.LevelVersion{Level: api.LevelPrivileged, Version: api.LatestVersion()},
		Warn:    api.LevelVersion{Level: api.LevelPrivileged, Version: api.LatestVersion()},
	}
	verdicts := []verdict{}
	for _, w := range workloads {
		meta, spec, err := admission.DefaultPodSpecExtractor{}.ExtractPodSpec(w.obj)
		if err != nil || spec == nil {
			return fmt.Errorf("%s: no pod template: %v", w.kind, err)
		}
		accessor := w.obj.(interface {
			GetName() string
			GetNamespace() string
		})
		labels, ok := namespaces[accessor.GetNamespace()]
		if !ok {
			return fmt.Errorf("%s %s: its namespace %q is not in the input", w.kind, accessor.GetName(), accessor.GetNamespace())
		}
		nsPolicy, errs := api.PolicyToEvaluate(labels, defaults)
		if len(errs) > 0 {
			return fmt.Errorf("namespace %s: %v", accessor.GetNamespace(), errs.ToAggregate())
		}
		judge := func(lv api.LevelVersion) levelVerdict {
			result := policy.AggregateCheckResults(evaluator.EvaluatePod(lv, meta, spec))
			reasons := []string{}
			for i, reason := range result.ForbiddenReasons {
				if detail := result.ForbiddenDetails[i]; detail != "" {
					reason += " (" + detail + ")"
				}
				reasons = append(reasons, reason)
			}
			return levelVerdict{string(lv.Level), lv.Version.String(), result.Allowed, reasons}
		}
		verdicts = append(verdicts, verdict{
			Kind: w.kind, Name: accessor.GetName(), Namespace: accessor.GetNamespace(),
			Enforce: judge(nsPolicy.Enforce), Audit: judge(nsPolicy.Audit), Warn: judge(nsPolicy.Warn),
		})
	}
	encoder := json.NewEncoder(out)
	encoder.SetIndent("", "  ")
	return encoder.Encode(verdicts)
}

// sourceDigest is the SHA-256 of this file, set at build time, so a changed source is rebuilt.
var sourceDigest = "unknown"

func main() {
	if len(os.Args) == 2 && os.Args[1] == "--version" {
		version := "unknown"
		if info, ok := debug.ReadBuildInfo(); ok {
			for _, dep := range info.Deps {
				if dep.Path == "k8s.io/pod-security-admission" {
					version = dep.Version
				}
			}
		}
		fmt.Printf("pod-security-check (k8s.io/pod-security-admission %s, source %s)\n", version, sourceDigest)
		return
	}
	if len(os.Args) > 1 {
		fmt.Fprintln(os.Stderr, "usage: pod-security-check < objects.json | pod-security-check --version")
		os.Exit(2)
	}
	if err := run(os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "pod-security-check:", err)
		os.Exit(1)
	}
}
