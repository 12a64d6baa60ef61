package inject

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	yamlv3 "go.yaml.in/yaml/v3"
	"sigs.k8s.io/yaml"
)

// Limits bound the memory a run can take, whatever its input.
type Limits struct {
	// MaxDocumentBytes is the largest document accepted.
	MaxDocumentBytes int64
	// MaxStreamBytes is the most input read in one run, all files and stdin together.
	MaxStreamBytes int64
	// MaxExpandedNodes and MaxExpandedBytes bound a document once its YAML aliases are
	// expanded (scalar bytes counted), which is what the conversion to JSON builds.
	MaxExpandedNodes int64
	MaxExpandedBytes int64
}

// DefaultLimits: 4 MiB per document, 64 MiB per run, and an expanded document of at most
// a million nodes and 16 MiB of scalars.
func DefaultLimits() Limits {
	return Limits{
		MaxDocumentBytes: 4 << 20,
		MaxStreamBytes:   64 << 20,
		MaxExpandedNodes: 1_000_000,
		MaxExpandedBytes: 16 << 20,
	}
}

// Source is one input: a file's or stdin's content.
type Source struct {
	// Name is the path, or "<stdin>".
	Name string
	Data []byte
}

// StdinName names standard input in messages.
const StdinName = "<stdin>"

// ReadSources reads every path in order: "-" is stdin (once), a directory is walked
// recursively in lexical order for *.yaml, *.yml and *.json files, and any other path is
// read as it is. Together they may not exceed lim.MaxStreamBytes.
func ReadSources(paths []string, stdin io.Reader, lim Limits) ([]Source, error) {
	if len(paths) == 0 {
		return nil, errors.New("no input: give files, directories, or - for stdin")
	}
	budget := lim.MaxStreamBytes
	var sources []Source
	read := func(name string, r io.Reader) error {
		data, err := io.ReadAll(io.LimitReader(r, budget+1))
		if err != nil {
			return fmt.Errorf("read %s: %w", name, err)
		}
		if int64(len(data)) > budget {
			return fmt.Errorf("%s: the input is over the %s limit of one run; split it into smaller runs", name, byteSize(lim.MaxStreamBytes))
		}
		budget -= int64(len(data))
		sources = append(sources, Source{Name: name, Data: data})
		return nil
	}
	readFile := func(path string) error {
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		return read(path, f)
	}
	usedStdin := false
	for _, path := range paths {
		if path == "-" {
			if usedStdin {
				return nil, errors.New("- (stdin) is given twice; give it once")
			}
			usedStdin = true
			if err := read(StdinName, stdin); err != nil {
				return nil, err
			}
			continue
		}
		info, err := os.Stat(path)
		if err != nil {
			return nil, fmt.Errorf("%w; give existing files or directories", err)
		}
		if !info.IsDir() {
			if err := readFile(path); err != nil {
				return nil, err
			}
			continue
		}
		err = filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() || !isManifestFile(p) {
				return nil
			}
			return readFile(p)
		})
		if err != nil {
			return nil, err
		}
	}
	return sources, nil
}

func isManifestFile(path string) bool {
	switch strings.ToLower(filepath.Ext(path)) {
	case ".yaml", ".yml", ".json":
		return true
	}
	return false
}

// Document is one document of a source.
type Document struct {
	Source string
	// Index counts the source's documents from 1, empty ones included; Line is where the
	// document starts in the source.
	Index, Line int
	// Raw is the document's text, without separators.
	Raw []byte
	// Object is the parsed document; nil for an empty document.
	Object map[string]any
}

// SplitDocuments cuts src into documents at "---" lines, as kubectl does (a line starting
// with "---" followed by nothing but spaces or a comment). A document over
// lim.MaxDocumentBytes is an error.
func SplitDocuments(src Source, lim Limits) ([]Document, error) {
	var docs []Document
	var current bytes.Buffer
	start, line, counted := 1, 0, 0
	flush := func() error {
		if int64(current.Len()) > lim.MaxDocumentBytes {
			return fmt.Errorf("%s: document %d (line %d) is over the %s limit for one document; split it", src.Name, counted+1, start, byteSize(lim.MaxDocumentBytes))
		}
		// Chunks of only comments and blank lines are kept (they parse as empty documents)
		// but not counted, so "document 2" is the second one a reader sees.
		if !blankOrComments(current.Bytes()) {
			counted++
		}
		docs = append(docs, Document{Source: src.Name, Index: counted, Line: start, Raw: bytes.Clone(current.Bytes())})
		current.Reset()
		return nil
	}
	rest := src.Data
	for len(rest) > 0 {
		line++
		var text []byte
		if i := bytes.IndexByte(rest, '\n'); i >= 0 {
			text, rest = rest[:i+1], rest[i+1:]
		} else {
			text, rest = rest, nil
		}
		if isSeparator(text) {
			if line > 1 || current.Len() > 0 {
				if err := flush(); err != nil {
					return nil, err
				}
			}
			start = line + 1
			continue
		}
		current.Write(text)
		if int64(current.Len()) > lim.MaxDocumentBytes {
			return nil, flush()
		}
	}
	if err := flush(); err != nil {
		return nil, err
	}
	return docs, nil
}

func blankOrComments(text []byte) bool {
	for line := range bytes.SplitSeq(text, []byte("\n")) {
		line = bytes.TrimSpace(line)
		if len(line) > 0 && line[0] != '#' {
			return false
		}
	}
	return true
}

func isSeparator(line []byte) bool {
	after, ok := bytes.CutPrefix(line, []byte("---"))
	if !ok {
		return false
	}
	after = bytes.TrimSpace(after)
	return len(after) == 0 || after[0] == '#'
}

// ParseSource splits src and parses each document; see ParseDocument.
func ParseSource(src Source, lim Limits) ([]Document, error) {
	docs, err := SplitDocuments(src, lim)
	if err != nil {
		return nil, err
	}
	for i := range docs {
		if err := ParseDocument(&docs[i], lim); err != nil {
			return nil, err
		}
	}
	return docs, nil
}

// ParseDocument parses doc.Raw into doc.Object with kubectl's YAML semantics
// (sigs.k8s.io/yaml; numbers kept exact). First a pre-scan parses it into a YAML node tree,
// which does not expand aliases, and refuses documents whose expansion would exceed lim.
// Errors name the source and the line in it.
func ParseDocument(doc *Document, lim Limits) error {
	var root yamlv3.Node
	dec := yamlv3.NewDecoder(bytes.NewReader(doc.Raw))
	if err := dec.Decode(&root); err != nil {
		if errors.Is(err, io.EOF) {
			return nil // empty document: comments or nothing
		}
		return doc.syntaxError(err)
	}
	cost := expansion{limit: lim, memo: map[*yamlv3.Node]size{}, active: map[*yamlv3.Node]bool{}}
	total, err := cost.of(&root)
	if err != nil {
		return fmt.Errorf("%s: document %d (line %d): %w; remove the aliases or split the document", doc.Source, doc.Index, doc.Line, err)
	}
	if total.nodes > lim.MaxExpandedNodes || total.bytes > lim.MaxExpandedBytes {
		return fmt.Errorf("%s: document %d (line %d) expands to more than %d YAML nodes or %s once its aliases are expanded; remove the aliases or split the document", doc.Source, doc.Index, doc.Line, lim.MaxExpandedNodes, byteSize(lim.MaxExpandedBytes))
	}
	var obj any
	if err := yaml.Unmarshal(doc.Raw, &obj, useNumber); err != nil {
		return doc.syntaxError(err)
	}
	switch o := obj.(type) {
	case nil:
		return nil
	case map[string]any:
		doc.Object = o
		return nil
	default:
		return fmt.Errorf("%s: document %d (line %d) is a %s, not a Kubernetes object (a mapping with apiVersion and kind); fix the manifest", doc.Source, doc.Index, doc.Line, jsonType(obj))
	}
}

func useNumber(d *json.Decoder) *json.Decoder {
	d.UseNumber()
	return d
}

var yamlLine = regexp.MustCompile(`^yaml: line (\d+): `)

// syntaxError turns a YAML error into "source:line: message", the line counted in the source.
func (doc *Document) syntaxError(err error) error {
	msg := err.Error()
	msg = strings.TrimPrefix(msg, "error converting YAML to JSON: ")
	line := doc.Line
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		n, _ := strconv.Atoi(m[1])
		line = doc.Line + n - 1
		msg = strings.Replace(msg, m[0], "", 1)
	}
	return fmt.Errorf("%s:%d: document %d is not valid YAML: %s; fix the manifest", doc.Source, line, doc.Index, msg)
}

// size is the expanded size of a YAML node: nodes, and bytes of scalars (keys included).
type size struct{ nodes, bytes int64 }

// expansion computes expanded sizes once per node (aliases reuse their anchor's), so the
// pre-scan itself is linear in the document.
type expansion struct {
	limit  Limits
	memo   map[*yamlv3.Node]size
	active map[*yamlv3.Node]bool
}

func (e *expansion) of(n *yamlv3.Node) (size, error) {
	if n == nil {
		return size{}, nil
	}
	if s, ok := e.memo[n]; ok {
		return s, nil
	}
	if e.active[n] {
		return size{}, errors.New("an alias refers to a node that contains it")
	}
	e.active[n] = true
	defer delete(e.active, n)
	s := size{nodes: 1, bytes: int64(len(n.Value))}
	children := n.Content
	if n.Kind == yamlv3.AliasNode {
		children = []*yamlv3.Node{n.Alias}
		s.bytes = 0
	}
	for _, child := range children {
		c, err := e.of(child)
		if err != nil {
			return size{}, err
		}
		// Saturate just above the limits: the sums cannot overflow.
		s.nodes = min(s.nodes+c.nodes, e.limit.MaxExpandedNodes+1)
		s.bytes = min(s.bytes+c.bytes, e.limit.MaxExpandedBytes+1)
	}
	e.memo[n] = s
	return s, nil
}

func byteSize(n int64) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d bytes", n)
}
