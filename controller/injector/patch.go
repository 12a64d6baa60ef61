package injector

import (
	"encoding/json"
	"maps"
	"reflect"
	"slices"
	"strings"
)

// patchOp is one RFC 6902 operation; remove has no value, add and replace always have one
// (even null).
type patchOp struct {
	Op    string
	Path  string
	Value any
}

func (o patchOp) MarshalJSON() ([]byte, error) {
	if o.Op == "remove" {
		return json.Marshal(struct {
			Op   string `json:"op"`
			Path string `json:"path"`
		}{o.Op, o.Path})
	}
	return json.Marshal(struct {
		Op    string `json:"op"`
		Path  string `json:"path"`
		Value any    `json:"value"`
	}{o.Op, o.Path, o.Value})
}

// nested are the fields compared one level deeper, so that the patch touches only what
// injection changed (spec.initContainers, spec.volumes, metadata.annotations and labels)
// and leaves the rest for other admission plugins.
var nested = map[string]bool{"metadata": true, "spec": true}

// jsonPatch returns the JSONPatch that turns before into after: whole fields are added,
// replaced or removed, in key order.
func jsonPatch(before, after map[string]any) ([]byte, error) {
	ops := diff("", before, after, true)
	return json.Marshal(ops)
}

func diff(path string, before, after map[string]any, top bool) []patchOp {
	var ops []patchOp
	for _, key := range slices.Sorted(maps.Keys(after)) {
		p := path + "/" + escape(key)
		old, present := before[key]
		switch {
		case !present:
			ops = append(ops, patchOp{Op: "add", Path: p, Value: after[key]})
		case reflect.DeepEqual(old, after[key]):
		default:
			oldMap, ok1 := old.(map[string]any)
			newMap, ok2 := after[key].(map[string]any)
			if top && nested[key] && ok1 && ok2 {
				ops = append(ops, diff(p, oldMap, newMap, false)...)
				continue
			}
			ops = append(ops, patchOp{Op: "replace", Path: p, Value: after[key]})
		}
	}
	for _, key := range slices.Sorted(maps.Keys(before)) {
		if _, kept := after[key]; !kept {
			ops = append(ops, patchOp{Op: "remove", Path: path + "/" + escape(key)})
		}
	}
	return ops
}

// escape encodes a key as a JSON Pointer token (RFC 6901).
func escape(key string) string {
	return strings.ReplaceAll(strings.ReplaceAll(key, "~", "~0"), "/", "~1")
}
