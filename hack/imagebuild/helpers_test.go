package main

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// fakeBinDir writes small fake binaries, as `make build` would, and returns their directory.
func fakeBinDir(t *testing.T, names ...string) string {
	t.Helper()
	dir := t.TempDir()
	for _, n := range names {
		writeFile(t, filepath.Join(dir, n), "fake binary "+n)
	}
	return dir
}

func writeFile(t *testing.T, p, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o755); err != nil {
		t.Fatal(err)
	}
}

// runImagebuild runs imagebuild with args and returns the "<reference> <path>" lines it
// printed, as a map from reference to path.
func runImagebuild(t *testing.T, args ...string) map[string]string {
	t.Helper()
	var out, errOut bytes.Buffer
	if err := run(args, &out, &errOut); err != nil {
		t.Fatalf("imagebuild %s: %v\nstderr:\n%s", strings.Join(args, " "), err, errOut.String())
	}
	return parseOutput(t, out.String())
}

func parseOutput(t *testing.T, out string) map[string]string {
	t.Helper()
	built := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		ref, p, ok := strings.Cut(line, " ")
		if !ok || !filepath.IsAbs(p) {
			t.Fatalf("output line %q is not \"<reference> <absolute path>\"", line)
		}
		built[ref] = p
	}
	return built
}

// layerFile is one entry of an image layer, read back from a tarball.
type layerFile struct {
	typ    byte
	mode   int64
	data   string
	target string
}

// readImage reads the image tarball at p (as `ctr images import` would) and returns the image,
// the tags recorded in its manifest and the entries of its single layer by absolute path.
func readImage(t *testing.T, p string) (v1.Image, []string, map[string]layerFile) {
	t.Helper()
	img, err := tarball.ImageFromPath(p, nil)
	if err != nil {
		t.Fatalf("reading image %s: %v", p, err)
	}
	manifest, err := tarball.LoadManifest(func() (io.ReadCloser, error) { return os.Open(p) })
	if err != nil {
		t.Fatalf("reading manifest.json of %s: %v", p, err)
	}
	if len(manifest) != 1 {
		t.Fatalf("%s holds %d images, want 1", p, len(manifest))
	}
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	if len(layers) != 1 {
		t.Fatalf("%s has %d layers, want 1", p, len(layers))
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	files := map[string]layerFile{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("reading the layer of %s: %v", p, err)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		if h.Uid != 0 || h.Gid != 0 || h.ModTime.Unix() != 0 {
			t.Errorf("%s: entry %s has uid %d gid %d mtime %v, want 0 0 and the epoch", p, h.Name, h.Uid, h.Gid, h.ModTime)
		}
		name := "/" + strings.TrimSuffix(h.Name, "/")
		if _, dup := files[name]; dup {
			t.Errorf("%s: entry %s appears twice in the layer", p, name)
		}
		files[name] = layerFile{typ: h.Typeflag, mode: h.Mode, data: string(data), target: h.Linkname}
	}
	return img, manifest[0].RepoTags, files
}

// regularFiles returns the paths of the regular files among files.
func regularFiles(files map[string]layerFile) []string {
	var paths []string
	for p, f := range files {
		if f.typ == tar.TypeReg {
			paths = append(paths, p)
		}
	}
	return paths
}
