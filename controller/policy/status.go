package policy

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/lightmesh/lightmesh/internal/policy/translate"
)

// ControllerName is the controllerName of lightmesh's HTTPRoute status entries.
const ControllerName = "lightmesh.io/mesh-controller"

// Condition types and reasons lightmesh writes.
const (
	ConditionAccepted     = "Accepted"
	ConditionReconciled   = "Reconciled"
	ConditionResolvedRefs = "ResolvedRefs"

	ReasonAccepted          = "Accepted"
	ReasonReconciled        = "Reconciled"
	ReasonResolvedRefs      = "ResolvedRefs"
	ReasonInvalid           = "Invalid"
	ReasonUnsupportedFields = "UnsupportedFields"
	ReasonUnsupportedValue  = "UnsupportedValue"
	ReasonInvalidKind       = "InvalidKind"
	// ReasonInvalidCertificateRef: a Gateway's HTTPS server names a Secret that is missing
	// or holds no usable certificate (Gateway API's reason for the same problem).
	ReasonInvalidCertificateRef = "InvalidCertificateRef"
)

// maxMessage bounds a condition message (Gateway API allows 32768 characters).
const maxMessage = 8192

// report is what translation said of one resource.
type report struct {
	unsupported []translate.Unsupported
	errors      []*translate.FieldError
	// credentialsChecked: a Gateway with HTTPS servers whose Secrets were looked up;
	// credentials says what is wrong with them.
	credentialsChecked bool
	credentials        []string
}

func (r *report) String() string {
	var b strings.Builder
	for _, e := range r.errors {
		b.WriteString(e.Error())
		b.WriteByte('\n')
	}
	for _, u := range r.unsupported {
		b.WriteString(u.String())
		b.WriteByte('\n')
	}
	for _, c := range r.credentials {
		b.WriteString(c)
		b.WriteByte('\n')
	}
	return b.String()
}

// collectReports groups the unsupported fields and the invalid resources of a translation
// by resource ("Kind namespace/name").
func collectReports(unsupported []translate.Unsupported, err error) map[string]*report {
	out := map[string]*report{}
	get := func(key string) *report {
		r, ok := out[key]
		if !ok {
			r = &report{}
			out[key] = r
		}
		return r
	}
	for _, u := range unsupported {
		get(u.Resource.String()).unsupported = append(get(u.Resource.String()).unsupported, u)
	}
	for _, e := range flatten(err) {
		var fe *translate.FieldError
		if errors.As(e, &fe) {
			get(fe.Resource.String()).errors = append(get(fe.Resource.String()).errors, fe)
		}
	}
	return out
}

// flatten returns the errors joined in err.
func flatten(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, flatten(e)...)
		}
		return out
	}
	return []error{err}
}

// unsupportedMessage lists the unsupported fields of rep.
func unsupportedMessage(rep *report) string {
	var parts []string
	for _, u := range rep.unsupported {
		path := u.FieldPath
		if path == "" {
			path = "(resource)"
		}
		parts = append(parts, path+": "+u.Reason)
	}
	return truncate("lightmesh does not apply these fields: " + strings.Join(parts, "; "))
}

func errorsMessage(rep *report) string {
	var parts []string
	for _, e := range rep.errors {
		if e.FieldPath != "" {
			parts = append(parts, e.FieldPath+": "+e.Err.Error())
		} else {
			parts = append(parts, e.Err.Error())
		}
	}
	return truncate("invalid, left out of the mesh's policy: " + strings.Join(parts, "; "))
}

func truncate(s string) string {
	if len(s) <= maxMessage {
		return s
	}
	return s[:maxMessage-3] + "..."
}

// condition is one status condition before its transition time is set.
type condition struct {
	Type, Status, Reason, Message string
}

// istioConditions are the Accepted and Reconciled conditions of an Istio resource.
func istioConditions(rep *report) []condition {
	switch {
	case rep != nil && len(rep.errors) > 0:
		msg := errorsMessage(rep)
		return []condition{
			{ConditionAccepted, "False", ReasonInvalid, msg},
			{ConditionReconciled, "False", ReasonInvalid, msg},
		}
	case rep != nil && len(rep.unsupported) > 0:
		return []condition{
			{ConditionAccepted, "True", ReasonAccepted, "translated to lightmesh's policy"},
			{ConditionReconciled, "False", ReasonUnsupportedFields, unsupportedMessage(rep)},
		}
	}
	return []condition{
		{ConditionAccepted, "True", ReasonAccepted, "translated to lightmesh's policy"},
		{ConditionReconciled, "True", ReasonReconciled, "every field is applied by lightmesh"},
	}
}

// credentialCondition is the ResolvedRefs condition of a Gateway with HTTPS servers: False
// names each Secret that is missing or invalid.
func credentialCondition(rep *report) condition {
	if len(rep.credentials) == 0 {
		return condition{ConditionResolvedRefs, "True", ReasonResolvedRefs, "every tls.credentialName names a Secret with a valid certificate"}
	}
	return condition{ConditionResolvedRefs, "False", ReasonInvalidCertificateRef, truncate(strings.Join(rep.credentials, "; "))}
}

// httpRouteConditions are the Accepted and ResolvedRefs conditions of an HTTPRoute parent.
func httpRouteConditions(rep *report) []condition {
	accepted := condition{ConditionAccepted, "True", ReasonAccepted, "attached to the Service by lightmesh"}
	resolved := condition{ConditionResolvedRefs, "True", ReasonResolvedRefs, "every backendRef is resolved"}
	if rep != nil && len(rep.unsupported) > 0 {
		accepted.Message = "attached to the Service by lightmesh; " + unsupportedMessage(rep)
	}
	if rep != nil && len(rep.errors) > 0 {
		accepted = condition{ConditionAccepted, "False", ReasonUnsupportedValue, errorsMessage(rep)}
		for _, e := range rep.errors {
			if strings.Contains(e.FieldPath, "backendRefs") {
				resolved = condition{ConditionResolvedRefs, "False", ReasonInvalidKind, errorsMessage(rep)}
				break
			}
		}
	}
	return []condition{accepted, resolved}
}

// mergeConditions returns existing with the conditions of want replaced or added; a
// condition whose status, reason and message did not change keeps its transition time.
func mergeConditions(existing []any, want []condition, generation int64, now time.Time) []any {
	out := make([]any, 0, len(existing)+len(want))
	byType := map[string]map[string]any{}
	for _, c := range existing {
		m, ok := c.(map[string]any)
		if !ok {
			continue
		}
		t, _ := m["type"].(string)
		byType[t] = m
	}
	wanted := map[string]bool{}
	for _, c := range want {
		wanted[c.Type] = true
	}
	for _, c := range existing {
		if m, ok := c.(map[string]any); ok {
			if t, _ := m["type"].(string); wanted[t] {
				continue
			}
		}
		out = append(out, c)
	}
	for _, c := range want {
		transition := now.UTC().Format(time.RFC3339)
		if old, ok := byType[c.Type]; ok && old["status"] == c.Status && old["reason"] == c.Reason && old["message"] == c.Message {
			if t, ok := old["lastTransitionTime"].(string); ok && t != "" {
				transition = t
			}
		}
		out = append(out, map[string]any{
			"type": c.Type, "status": c.Status, "reason": c.Reason, "message": c.Message,
			"lastTransitionTime": transition, "observedGeneration": generation,
		})
	}
	return out
}

// desiredStatus returns obj's status with lightmesh's conditions, or nil when lightmesh
// writes none for it (an HTTPRoute without Service parents).
func (w *Watcher) desiredStatus(obj *unstructured.Unstructured, rep *report) map[string]any {
	status, _, _ := unstructured.NestedMap(obj.Object, "status")
	if status == nil {
		status = map[string]any{}
	}
	now := w.opts.Now()
	if obj.GetKind() != "HTTPRoute" {
		existing, _, _ := unstructured.NestedSlice(status, "conditions")
		conditions := istioConditions(rep)
		if rep != nil && rep.credentialsChecked {
			conditions = append(conditions, credentialCondition(rep))
		}
		status["conditions"] = mergeConditions(existing, conditions, obj.GetGeneration(), now)
		status["observedGeneration"] = obj.GetGeneration()
		return status
	}
	parentRefs, _, _ := unstructured.NestedSlice(obj.Object, "spec", "parentRefs")
	existing, _, _ := unstructured.NestedSlice(status, "parents")
	var parents []any
	ours := map[string]map[string]any{}
	for _, p := range existing {
		m, ok := p.(map[string]any)
		if !ok {
			continue
		}
		if m["controllerName"] == ControllerName {
			ref, _ := m["parentRef"].(map[string]any)
			ours[refKey(ref)] = m
			continue
		}
		parents = append(parents, p)
	}
	added := 0
	for _, p := range parentRefs {
		ref, ok := p.(map[string]any)
		if !ok || !serviceParent(ref) {
			continue
		}
		var oldConditions []any
		if old, ok := ours[refKey(ref)]; ok {
			oldConditions, _ = old["conditions"].([]any)
		}
		parents = append(parents, map[string]any{
			"parentRef":      ref,
			"controllerName": ControllerName,
			"conditions":     mergeConditions(oldConditions, httpRouteConditions(rep), obj.GetGeneration(), now),
		})
		added++
	}
	if added == 0 && len(ours) == 0 {
		return nil
	}
	if parents == nil {
		parents = []any{}
	}
	status["parents"] = parents
	return status
}

// serviceParent reports whether ref names a Service (GAMMA), the parents lightmesh serves.
func serviceParent(ref map[string]any) bool {
	group, _ := ref["group"].(string)
	kind, _ := ref["kind"].(string)
	return (group == "" || group == "core") && kind == "Service"
}

func refKey(ref map[string]any) string {
	return fmt.Sprint(ref["group"], "/", ref["kind"], "/", ref["namespace"], "/", ref["name"], "/", ref["sectionName"], "/", ref["port"])
}

// writeStatus writes obj's status through the status subresource when it differs from what
// the object has (and was not just written).
func (w *Watcher) writeStatus(ctx context.Context, ki *kindInformer, obj *unstructured.Unstructured, key string, rep *report) {
	want := w.desiredStatus(obj, rep)
	if want == nil {
		return
	}
	current, _, _ := unstructured.NestedMap(obj.Object, "status")
	if reflect.DeepEqual(normalize(current), normalize(want)) {
		return
	}
	mark := obj.GetResourceVersion() + "\n" + fmt.Sprint(normalize(want))
	w.mu.Lock()
	done := w.written[key] == mark
	w.mu.Unlock()
	if done {
		return // written; the cache has not seen it yet
	}
	updated := obj.DeepCopy()
	if err := unstructured.SetNestedField(updated.Object, want, "status"); err != nil {
		w.log.Error("cannot set status", "resource", key, "error", err)
		return
	}
	writeCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := w.opts.Client.Resource(ki.gvr).Namespace(obj.GetNamespace()).UpdateStatus(writeCtx, updated, metav1.UpdateOptions{}); err != nil {
		w.log.Warn("cannot write the status: check the controller's RBAC (update on the status subresource); will retry on the next change", "resource", key, "error", err)
		return
	}
	w.mu.Lock()
	w.written[key] = mark
	w.mu.Unlock()
	w.log.Debug("status written", "resource", key)
}

// normalize makes a status comparable: integers as int64, transition times left out.
func normalize(v any) any {
	switch t := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(t))
		for k, x := range t {
			if k == "lastTransitionTime" {
				continue
			}
			out[k] = normalize(x)
		}
		return out
	case []any:
		out := make([]any, len(t))
		for i, x := range t {
			out[i] = normalize(x)
		}
		return out
	case int:
		return int64(t)
	case int32:
		return int64(t)
	case float64:
		return int64(t)
	}
	return v
}
