package inject

import (
	"bytes"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
)

func TestSplitDocuments(t *testing.T) {
	input := "# lead comment\n---\na: 1\n--- # separator with a comment\nb: 2\n---\n\n---\nc: |\n  --- inside a block is not a separator? it is indented\n---x: not a separator\n"
	docs, err := SplitDocuments(Source{Name: "s", Data: []byte(input)}, DefaultLimits())
	if err != nil {
		t.Fatal(err)
	}
	type doc struct {
		index, line int
		raw         string
	}
	var got []doc
	for _, d := range docs {
		got = append(got, doc{d.Index, d.Line, string(d.Raw)})
	}
	want := []doc{
		{0, 1, "# lead comment\n"},
		{1, 3, "a: 1\n"},
		{2, 5, "b: 2\n"},
		{2, 7, "\n"},
		{3, 9, "c: |\n  --- inside a block is not a separator? it is indented\n---x: not a separator\n"},
	}
	if !slices.Equal(got, want) {
		t.Errorf("documents\n got %+v\nwant %+v", got, want)
	}
}

func TestReadSources(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) {
		path := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("b.yaml", "b")
	write("a/c.yml", "c")
	write("a/d.json", "d")
	write("a/README.md", "not a manifest")
	write("e.txt", "explicitly named")
	sources, err := ReadSources([]string{dir, "-", filepath.Join(dir, "e.txt")}, strings.NewReader("stdin"), DefaultLimits())
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, s := range sources {
		got = append(got, strings.TrimPrefix(s.Name, dir+"/")+"="+string(s.Data))
	}
	want := []string{"a/c.yml=c", "a/d.json=d", "b.yaml=b", "<stdin>=stdin", "e.txt=explicitly named"}
	if !slices.Equal(got, want) {
		t.Errorf("sources %v, want %v", got, want)
	}
	if _, err := ReadSources([]string{"-", "-"}, strings.NewReader(""), DefaultLimits()); err == nil {
		t.Error("stdin twice was accepted")
	}
	if _, err := ReadSources(nil, nil, DefaultLimits()); err == nil {
		t.Error("no input was accepted")
	}
	if _, err := ReadSources([]string{filepath.Join(dir, "missing.yaml")}, nil, DefaultLimits()); err == nil {
		t.Error("a missing file was accepted")
	}
}

// The stream cap holds for everything read together, and reading stops at the cap.
func TestStreamLimit(t *testing.T) {
	lim := DefaultLimits()
	lim.MaxStreamBytes = 100
	_, err := ReadSources([]string{"-"}, bytes.NewReader(make([]byte, 101)), lim)
	if err == nil || !strings.Contains(err.Error(), "limit") {
		t.Fatalf("error %v, want the stream limit", err)
	}
	dir := t.TempDir()
	for _, name := range []string{"a.yaml", "b.yaml"} {
		if err := os.WriteFile(filepath.Join(dir, name), make([]byte, 60), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := ReadSources([]string{dir}, nil, lim); err == nil {
		t.Fatal("two files over the stream limit together were accepted")
	}
	// The real limit: 64 MiB + 1 byte from an endless reader is refused after reading it.
	if _, err := ReadSources([]string{"-"}, endless{}, DefaultLimits()); err == nil || !strings.Contains(err.Error(), "64 MiB") {
		t.Fatalf("error %v, want the 64 MiB stream limit", err)
	}
}

type endless struct{}

func (endless) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = '#'
	}
	return len(p), nil
}

func TestDocumentLimit(t *testing.T) {
	big := "apiVersion: v1\nkind: ConfigMap\ndata:\n  x: \"" + strings.Repeat("a", 4<<20) + "\"\n"
	_, err := ParseSource(Source{Name: "big.yaml", Data: []byte("a: 1\n---\n" + big)}, DefaultLimits())
	if err == nil || !strings.Contains(err.Error(), "document 2") || !strings.Contains(err.Error(), "4 MiB") {
		t.Fatalf("error %v, want document 2 over the 4 MiB limit", err)
	}
	// Just under the limit is fine.
	fits := "apiVersion: v1\nkind: ConfigMap\ndata:\n  x: \"" + strings.Repeat("a", 4<<20-100) + "\"\n"
	if _, err := ParseSource(Source{Name: "fits.yaml", Data: []byte(fits)}, DefaultLimits()); err != nil {
		t.Fatalf("a document under the limit was refused: %v", err)
	}
}

// Alias bombs are refused before anything expands them, with little memory.
func TestAliasBombs(t *testing.T) {
	laughs := `apiVersion: v1
kind: ConfigMap
metadata: {name: lol}
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
`
	// A few aliases of one big scalar: few nodes, many bytes.
	scalar := "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: big}\ndata:\n  a: &big \"" + strings.Repeat("x", 1<<20) + "\"\n"
	for i := range 40 {
		scalar += "  b" + strings.Repeat("x", i) + ": *big\n"
	}
	cases := map[string]string{
		"billion laughs": laughs,
		"big scalar":     scalar,
		"self reference": "a: &a [1, *a]\n",
	}
	for name, input := range cases {
		t.Run(name, func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			_, err := Run([]Source{{Name: "bomb.yaml", Data: []byte(input)}}, Options{Mode: ModeUninject})
			runtime.ReadMemStats(&after)
			if err == nil {
				t.Fatal("the alias bomb was accepted")
			}
			if !strings.Contains(err.Error(), "bomb.yaml") || !strings.Contains(err.Error(), "alias") {
				t.Errorf("error %v does not name the file and the aliases", err)
			}
			if grew := after.TotalAlloc - before.TotalAlloc; grew > 64<<20 {
				t.Errorf("refusing it allocated %d MiB", grew>>20)
			}
		})
	}
	// A few honest aliases pass.
	ok := "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: ok}\ndata:\n  a: &v hello\n  b: *v\n"
	if _, err := Run([]Source{{Name: "ok.yaml", Data: []byte(ok)}}, Options{Mode: ModeUninject}); err != nil {
		t.Fatalf("a document with a few aliases was refused: %v", err)
	}
}

func TestParsePorts(t *testing.T) {
	good := map[string]string{
		"":                "",
		"80":              "80",
		" 80 , 443 ":      "80,443",
		"9000-9100,1":     "9000-9100,1",
		"65535,1-65535":   "65535,1-65535",
		"8080-8080":       "8080",
		"3306,5432, 6379": "3306,5432,6379",
	}
	for in, want := range good {
		p, err := ParsePorts(in)
		if err != nil || p.String() != want {
			t.Errorf("ParsePorts(%q) = %q, %v; want %q", in, p.String(), err, want)
		}
	}
	for _, in := range []string{"0", "65536", "1-65536", "100-10", "80,", "a", "80 443", "-1", "+80", "80-", "0x50", "1e3"} {
		if p, err := ParsePorts(in); err == nil {
			t.Errorf("ParsePorts(%q) = %v, want an error", in, p)
		}
	}
}

func TestParseSubnets(t *testing.T) {
	s, err := ParseSubnets("10.1.2.3/8, 192.168.0.0/16,fd00::1/8")
	if err != nil || SubnetsString(s) != "10.0.0.0/8,192.168.0.0/16,fd00::/8" {
		t.Errorf("ParseSubnets = %v, %v", SubnetsString(s), err)
	}
	for _, in := range []string{"10.0.0.0/33", "10.0.0.0", "10.0.0.0/8,", "banana/1", "::/129"} {
		if _, err := ParseSubnets(in); err == nil {
			t.Errorf("ParseSubnets(%q) accepted", in)
		}
	}
}

func TestValidateOverride(t *testing.T) {
	good := map[string]string{
		KeyProxyCPURequest: "0.1", KeyProxyCPULimit: "2", KeyProxyMemoryRequest: "64Mi", KeyProxyMemoryLimit: "1Gi",
		KeyProxyLogLevel: "error", KeyProxyLogFormat: "json", KeyProxyImage: "localhost:5000/proxy@sha256:" + strings.Repeat("a", 64),
		KeyProxySchedulerPoll: "false", KeyProxyMaxInFlightRequests: "1000000",
	}
	for key, value := range good {
		if err := ValidateOverride(key, value); err != nil {
			t.Errorf("%s=%s: %v", key, value, err)
		}
	}
	bad := map[string]string{
		KeyProxyCPURequest: "1 core", KeyProxyMemoryLimit: "0", KeyProxyLogLevel: "INFO", KeyProxyLogFormat: "text",
		KeyProxyImage: "UPPER/case", "no-such-key": "x", KeyProxyInitImage: "",
		KeyProxySchedulerPoll: "TRUE", KeyProxyMaxInFlightRequests: "1000001",
	}
	for key, value := range bad {
		if err := ValidateOverride(key, value); err == nil {
			t.Errorf("%s=%q accepted", key, value)
		}
	}
}
