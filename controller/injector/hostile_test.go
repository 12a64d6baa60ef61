package injector

// Hostile input to the webhook (issue 13): annotation values that try to smuggle iptables
// arguments into mesh-init, and AdmissionReview bodies built to cost time or memory (deep
// nesting, many fields, huge strings under the body limit). Injection is refused with a
// warning naming the annotation, the value never reaches a container, and every answer is
// bounded in time.

import (
	"bytes"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/lightmesh/lightmesh/internal/inject"
)

func TestIptablesArgumentsInAnnotationsAreRefused(t *testing.T) {
	namespaces := fakeNamespaces{"app": {inject.AnnotationInject: inject.InjectEnabled}}
	h := newTestHandler(t, fakeConfig{cfg: installedConfig(t)}, namespaces)
	cases := []struct{ key, value string }{
		{"config.lightmesh.io/skip-inbound-ports", "80 -j ACCEPT"},
		{"config.lightmesh.io/skip-inbound-ports", "80,-j,ACCEPT"},
		{"config.lightmesh.io/skip-inbound-ports", "80;iptables -F"},
		{"config.lightmesh.io/skip-inbound-ports", "80\n-A INPUT -j ACCEPT"},
		{"config.lightmesh.io/skip-outbound-ports", "$(iptables -F)"},
		{"config.lightmesh.io/skip-outbound-ports", "443 --to-ports 22"},
		{"config.lightmesh.io/skip-outbound-ports", "1-65535 -m owner"},
		{"config.lightmesh.io/opaque-ports", "3306`reboot`"},
		{"config.lightmesh.io/skip-subnets", "10.0.0.0/8 -j ACCEPT"},
		{"config.lightmesh.io/skip-subnets", "0.0.0.0/0,--dport 22"},
		{"config.lightmesh.io/proxy-log-level", "info --privileged"},
		{"config.lightmesh.io/proxy-image", "img:1 --entrypoint sh"},
	}
	for _, c := range cases {
		t.Run(c.key+"="+c.value, func(t *testing.T) {
			// Quoted as a JSON string inside the YAML flow mapping.
			pod := withAnnotations(c.key + `: ` + jsonString(c.value))
			resp := respond(t, h, reviewBody(t, "app", pod))
			if len(resp.Patch) > 0 {
				t.Fatalf("the pod was injected: %s", resp.Patch)
			}
			warnings := strings.Join(resp.Warnings, "\n")
			if !strings.Contains(warnings, c.key) {
				t.Errorf("warnings %q do not name %s", warnings, c.key)
			}
		})
	}
	// The same values on the namespace, which pods inherit.
	for _, c := range cases[:3] {
		ns := fakeNamespaces{"evil": {inject.AnnotationInject: inject.InjectEnabled, c.key: c.value}}
		h := newTestHandler(t, fakeConfig{cfg: installedConfig(t)}, ns)
		resp := respond(t, h, reviewBody(t, "evil", plainPod))
		if bytes.Contains(resp.Patch, []byte("-j")) || bytes.Contains(resp.Patch, []byte("iptables")) {
			t.Errorf("namespace annotation %s=%q reached the patch: %s", c.key, c.value, resp.Patch)
		}
	}
}

func jsonString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch r {
		case '"', '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case '\n':
			b.WriteString(`\n`)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// Reviews under the 1 MiB body limit but built to be expensive: the webhook answers each
// within a second (400 or an allowed review), never hangs or crashes.
func TestExpensiveReviewsAreBounded(t *testing.T) {
	h := newTestHandler(t, fakeConfig{cfg: installedConfig(t)}, fakeNamespaces{"app": {inject.AnnotationInject: inject.InjectEnabled}})
	valid := string(reviewBody(t, "app", plainPod))
	deep := strings.Repeat("[", 200_000) + strings.Repeat("]", 200_000)
	var manyLabels strings.Builder
	for i := range 20_000 {
		if i > 0 {
			manyLabels.WriteByte(',')
		}
		manyLabels.WriteString(`"l` + itoa(i) + `":"v"`)
	}
	cases := map[string]string{
		"deep nesting in the object": strings.Replace(valid, `"spec":{`, `"x":`+deep+`,"spec":{`, 1),
		"deep nesting at the top":    deep,
		"deep objects":               strings.Repeat(`{"a":`, 100_000) + "1" + strings.Repeat("}", 100_000),
		"20,000 labels":              strings.Replace(valid, `"labels":{"app":"web"}`, `"labels":{`+manyLabels.String()+`}`, 1),
		"900 KiB annotation":         strings.Replace(valid, `"labels":{"app":"web"}`, `"labels":{"app":"web"},"annotations":{"a":"`+strings.Repeat("x", 900<<10)+`"}`, 1),
		"duplicate keys":             strings.Replace(valid, `"request":{`, `"request":{"uid":"a","uid":"b",`, 1),
		"NUL in the object":          strings.Replace(valid, `"name":"web"`, `"name":"we\u0000b"`, 1),
		"invalid UTF-8":              strings.Replace(valid, `"name":"web"`, "\"name\":\"w\xff\xfeb\"", 1),
	}
	for name, body := range cases {
		t.Run(name, func(t *testing.T) {
			start := time.Now()
			code, out := post(h, []byte(body))
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("answering took %v", d)
			}
			if code != http.StatusOK && code != http.StatusBadRequest {
				t.Errorf("HTTP %d: %.200s", code, out)
			}
			if code == http.StatusBadRequest && len(bytes.TrimSpace(out)) == 0 {
				t.Error("a 400 without a message")
			}
		})
	}
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var b []byte
	for ; n > 0; n /= 10 {
		b = append([]byte{byte('0' + n%10)}, b...)
	}
	return string(b)
}
