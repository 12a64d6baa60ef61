package version

import "testing"

func TestVersionComesFromFile(t *testing.T) {
	if Version == "" || Version != versionFileTrimmed() {
		t.Fatalf("Version = %q, want the VERSION file's content %q", Version, versionFileTrimmed())
	}
}

func versionFileTrimmed() string {
	s := versionFile
	for len(s) > 0 && (s[len(s)-1] == '\n' || s[len(s)-1] == ' ') {
		s = s[:len(s)-1]
	}
	return s
}

func TestImage(t *testing.T) {
	cases := []struct{ registry, component, want string }{
		{"", "mesh-proxy", DefaultRegistry + "/mesh-proxy:" + Version},
		{"localhost:5000/x/", "mesh-web", "localhost:5000/x/mesh-web:" + Version},
	}
	for _, c := range cases {
		if got := Image(c.registry, c.component); got != c.want {
			t.Errorf("Image(%q, %q) = %q, want %q", c.registry, c.component, got, c.want)
		}
	}
}
