package inject

import (
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"

	"sigs.k8s.io/yaml"
)

// Mode is what Run does to the documents.
type Mode int

const (
	// ModeInject adds the full sidecar.
	ModeInject Mode = iota
	// ModeAnnotateOnly adds lightmesh.io/inject: enabled (and the overrides as
	// config.lightmesh.io/* annotations) and leaves the rest to the webhook.
	ModeAnnotateOnly
	// ModeUninject removes what ModeInject or ModeAnnotateOnly added.
	ModeUninject
)

// Options are the choices of Run.
type Options struct {
	Mode Mode
	// Config is the installation's configuration; ModeInject needs its TrustAnchorsPEM.
	Config Config
	// Overrides (keys from OverrideKeys) apply to every workload after its own
	// config.lightmesh.io/* annotations; messages name them as flags (--key).
	Overrides map[string]string
	// Limits bound memory; zero fields take DefaultLimits.
	Limits Limits
}

// Action is what happened to one object.
type Action string

const (
	Injected   Action = "injected"
	Annotated  Action = "annotated"
	Uninjected Action = "uninjected"
	Skipped    Action = "skipped"
	Unchanged  Action = "unchanged"
)

// Entry reports one object (a document, or an item of a List).
type Entry struct {
	Source string
	// Document is the document's number in its source; Item the List item's (from 1), or 0.
	Document, Item int
	Line           int
	Kind, Name     string
	Action         Action
	Reason         string
}

// Where names the entry's place: "deploy.yaml document 2" or "... item 3".
func (e Entry) Where() string {
	s := fmt.Sprintf("%s document %d", e.Source, e.Document)
	if e.Item > 0 {
		s += fmt.Sprintf(" item %d", e.Item)
	}
	return s
}

// Object names the entry's object: "deployment/web".
func (e Entry) Object() string {
	kind := strings.ToLower(e.Kind)
	if kind == "" {
		kind = "(no kind)"
	}
	if e.Name == "" {
		return kind
	}
	return kind + "/" + e.Name
}

// Result is Run's output and report.
type Result struct {
	// Output is the transformed stream: every non-empty document in order, separated by ---.
	Output  []byte
	Entries []Entry
}

// WriteReport writes one line per object and a summary, for stderr.
func (r *Result) WriteReport(w io.Writer) error {
	width := 0
	for _, e := range r.Entries {
		width = max(width, len(e.Object()))
	}
	counts := map[Action]int{}
	for _, e := range r.Entries {
		counts[e.Action]++
		line := fmt.Sprintf("%-10s %-*s  (%s)", e.Action, width, e.Object(), e.Where())
		if e.Reason != "" {
			line += ": " + e.Reason
		}
		if _, err := fmt.Fprintln(w, strings.TrimRight(line, " ")); err != nil {
			return err
		}
	}
	var parts []string
	for _, a := range []Action{Injected, Annotated, Uninjected, Skipped, Unchanged} {
		if counts[a] > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", counts[a], a))
		}
	}
	if len(parts) == 0 {
		parts = []string{"no objects"}
	}
	_, err := fmt.Fprintf(w, "summary: %s\n", strings.Join(parts, ", "))
	return err
}

// Run parses every source, transforms every document, and returns the whole output, or the
// first error and no output.
func Run(sources []Source, opts Options) (*Result, error) {
	if opts.Limits == (Limits{}) {
		opts.Limits = DefaultLimits()
	}
	if opts.Mode == ModeInject {
		if opts.Config.TrustAnchorsPEM == "" {
			return nil, errors.New("no trust anchors to give the proxy: pass the installation's trust anchors, or annotate only")
		}
		if err := opts.Config.Validate(); err != nil {
			return nil, fmt.Errorf("configuration: %w", err)
		}
	}
	if err := ValidateOverrides(opts.Overrides); err != nil {
		var ke *KeyError
		if errors.As(err, &ke) {
			return nil, fmt.Errorf("--%s: %w", ke.Key, err)
		}
		return nil, err
	}
	result := &Result{}
	var out []byte
	for _, src := range sources {
		docs, err := ParseSource(src, opts.Limits)
		if err != nil {
			return nil, err
		}
		for _, doc := range docs {
			if doc.Object == nil {
				continue
			}
			changed, entries, err := transformDocument(&doc, opts)
			if err != nil {
				return nil, err
			}
			result.Entries = append(result.Entries, entries...)
			text := doc.Raw
			if changed {
				if text, err = yaml.Marshal(doc.Object); err != nil {
					return nil, fmt.Errorf("%s document %d: encode: %w", doc.Source, doc.Index, err)
				}
			}
			if len(out) > 0 {
				out = append(out, "---\n"...)
			}
			out = append(out, text...)
			if len(text) > 0 && text[len(text)-1] != '\n' {
				out = append(out, '\n')
			}
		}
	}
	result.Output = out
	return result, nil
}

// transformDocument transforms one document in place (each item of a v1 List).
func transformDocument(doc *Document, opts Options) (bool, []Entry, error) {
	base := Entry{Source: doc.Source, Document: doc.Index, Line: doc.Line}
	apiVersion, kind := stringField(doc.Object, "apiVersion"), stringField(doc.Object, "kind")
	if kind != "List" || apiVersion != "v1" {
		entry, changed, err := transformObject(doc.Object, opts, base)
		return changed, []Entry{entry}, err
	}
	items, ok := doc.Object["items"].([]any)
	if !ok && doc.Object["items"] != nil {
		return false, nil, fmt.Errorf("%s: items is not a list; fix the manifest", base.Where())
	}
	var entries []Entry
	anyChanged := false
	for i, item := range items {
		where := base
		where.Item = i + 1
		obj, ok := item.(map[string]any)
		if !ok {
			return false, nil, fmt.Errorf("%s: the item is a %s, not a Kubernetes object; fix the manifest", where.Where(), jsonType(item))
		}
		entry, changed, err := transformObject(obj, opts, where)
		if err != nil {
			return false, nil, err
		}
		entries = append(entries, entry)
		anyChanged = anyChanged || changed
	}
	return anyChanged, entries, nil
}

// transformObject transforms one Kubernetes object in place according to opts.Mode.
func transformObject(obj map[string]any, opts Options, entry Entry) (Entry, bool, error) {
	entry.Kind = stringField(obj, "kind")
	if md, ok := obj["metadata"].(map[string]any); ok {
		entry.Name = stringField(md, "name")
		if entry.Name == "" {
			entry.Name = stringField(md, "generateName")
		}
	}
	fail := func(err error) (Entry, bool, error) {
		return entry, false, fmt.Errorf("%s (%s, line %d): %w", entry.Where(), entry.Object(), entry.Line, err)
	}
	apiVersion := stringField(obj, "apiVersion")
	if entry.Kind == "Namespace" && apiVersion == "v1" {
		action, reason, changed, err := transformNamespace(obj, opts)
		if err != nil {
			return fail(err)
		}
		entry.Action, entry.Reason = action, reason
		return entry, changed, nil
	}
	w, ok := workloadOf(apiVersion, entry.Kind)
	if !ok {
		entry.Action, entry.Reason = Unchanged, "not a workload"
		if known, isKind := workloads[entry.Kind]; isKind {
			group := known.group
			if group == "" {
				group = "the core group (v1)"
			}
			entry.Reason = fmt.Sprintf("not a workload: apiVersion %q is not of %s", apiVersion, group)
		}
		return entry, false, nil
	}
	t, err := findPodTemplate(obj, w)
	if err != nil {
		return fail(err)
	}
	var action Action
	var reason string
	var changed bool
	if opts.Mode == ModeUninject {
		action, reason, changed, err = uninjectTemplate(t)
	} else {
		action, reason, changed, err = injectTemplate(t, opts)
	}
	if err != nil {
		return fail(err)
	}
	entry.Action, entry.Reason = action, reason
	return entry, changed, nil
}

// InjectObject injects one object (a workload, a Pod or a Namespace) in place, as `mesh
// inject` does to each document; the webhook calls it on the pods it admits. It reports what
// it did, and whether obj changed.
func InjectObject(obj map[string]any, opts Options) (Action, string, bool, error) {
	entry, changed, err := transformObject(obj, opts, Entry{})
	return entry.Action, entry.Reason, changed, err
}

func transformNamespace(obj map[string]any, opts Options) (Action, string, bool, error) {
	ns := &podTemplate{holder: obj, isPod: true}
	annotations, err := ns.stringMap("annotations")
	if err != nil {
		return "", "", false, err
	}
	current := annotations[AnnotationInject]
	if opts.Mode == ModeUninject {
		return unannotate(ns, annotations)
	}
	switch current {
	case InjectDisabled:
		return Skipped, AnnotationInject + ": disabled", false, nil
	case InjectEnabled, InjectIngress:
		return Unchanged, "already annotated " + AnnotationInject + ": " + current, false, nil
	case "":
	default:
		return "", "", false, badInjectValue(current)
	}
	ns.setString("annotations", AnnotationInject, InjectEnabled)
	ns.setString("annotations", AnnotationAnnotatedBy, opts.Config.InjectedBy)
	return Annotated, AnnotationInject + ": " + InjectEnabled + " (the webhook injects its pods)", true, nil
}

// unannotate removes lightmesh.io/inject: enabled where mesh inject added it (it marks that
// with lightmesh.io/annotated-by), and leaves it where someone else wrote it.
func unannotate(t *podTemplate, annotations map[string]string) (Action, string, bool, error) {
	if _, marked := annotations[AnnotationAnnotatedBy]; marked {
		t.deleteString("annotations", AnnotationAnnotatedBy)
		if annotations[AnnotationInject] == InjectEnabled {
			t.deleteString("annotations", AnnotationInject)
		}
		return Uninjected, "removed " + AnnotationInject + ": " + InjectEnabled, true, nil
	}
	if annotations[AnnotationInject] == InjectEnabled {
		return Unchanged, AnnotationInject + ": enabled was not added by mesh inject; kept (delete it, or set it to disabled, to keep the webhook from injecting)", false, nil
	}
	return Unchanged, "not injected", false, nil
}

func badInjectValue(v string) error {
	return fmt.Errorf("annotation %s: %q is not enabled, disabled or ingress; fix the annotation", AnnotationInject, v)
}

func injectTemplate(t *podTemplate, opts Options) (Action, string, bool, error) {
	annotations, err := t.stringMap("annotations")
	if err != nil {
		return "", "", false, err
	}
	if _, err := t.stringMap("labels"); err != nil {
		return "", "", false, err
	}
	mode := annotations[AnnotationInject]
	switch mode {
	case "", InjectEnabled, InjectDisabled, InjectIngress:
	default:
		return "", "", false, badInjectValue(mode)
	}
	if t.isInjected(annotations) {
		return Skipped, "already injected", false, nil
	}
	if mode == InjectDisabled {
		return Skipped, AnnotationInject + ": disabled", false, nil
	}
	if t.typed.HostNetwork {
		return Skipped, "hostNetwork: true; the proxy-init rules would apply to the node's own traffic", false, nil
	}
	for _, name := range []string{InitContainerName} {
		if t.hasContainer(name) {
			return Skipped, fmt.Sprintf("it already has a container named %s; rename that container to inject", name), false, nil
		}
	}
	if t.hasVolume(TokenVolumeName) {
		return Skipped, fmt.Sprintf("it already has a volume named %s; rename that volume to inject", TokenVolumeName), false, nil
	}

	// Configuration: the installation's, then the template's annotations, then the overrides.
	cfg := opts.Config
	fromAnnotations := map[string]string{}
	for key, value := range annotations {
		if short, ok := strings.CutPrefix(key, ConfigAnnotationPrefix); ok {
			fromAnnotations[short] = value
		}
	}
	if err := cfg.ApplyOverrides(fromAnnotations); err != nil {
		var ke *KeyError
		if errors.As(err, &ke) {
			return "", "", false, fmt.Errorf("annotation %s%s: %w; fix the annotation", ConfigAnnotationPrefix, ke.Key, err)
		}
		return "", "", false, err
	}
	if err := cfg.ApplyOverrides(opts.Overrides); err != nil {
		var ke *KeyError
		if errors.As(err, &ke) {
			return "", "", false, fmt.Errorf("--%s: %w", ke.Key, err)
		}
		return "", "", false, err
	}

	if opts.Mode == ModeAnnotateOnly {
		changed := false
		if mode == "" {
			t.setString("annotations", AnnotationInject, InjectEnabled)
			t.setString("annotations", AnnotationAnnotatedBy, cfg.InjectedBy)
			changed = true
		}
		for _, key := range slices.Sorted(maps.Keys(opts.Overrides)) {
			value := strings.TrimSpace(opts.Overrides[key])
			if annotations[ConfigAnnotationPrefix+key] != value {
				t.setString("annotations", ConfigAnnotationPrefix+key, value)
				changed = true
			}
		}
		if mode == "" {
			mode = InjectEnabled
		}
		if !changed {
			return Unchanged, "already annotated " + AnnotationInject + ": " + mode, false, nil
		}
		return Annotated, AnnotationInject + ": " + mode, true, nil
	}
	if err := t.addSidecar(&cfg, mode == InjectIngress); err != nil {
		return "", "", false, err
	}
	return Injected, "", true, nil
}

func uninjectTemplate(t *podTemplate) (Action, string, bool, error) {
	annotations, err := t.stringMap("annotations")
	if err != nil {
		return "", "", false, err
	}
	if !t.isInjected(annotations) {
		return unannotate(t, annotations)
	}
	t.removeSidecar()
	if _, marked := annotations[AnnotationAnnotatedBy]; marked {
		if _, _, _, err := unannotate(t, annotations); err != nil {
			return "", "", false, err
		}
	}
	return Uninjected, "", true, nil
}

func stringField(m map[string]any, key string) string {
	s, _ := m[key].(string)
	return s
}
