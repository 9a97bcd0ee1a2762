package controlplane

import (
	"bytes"
	"fmt"
)

// docSpan is a piece of a manifest file and where it starts in the file, so that errors can
// point into the file rather than into the piece.
type docSpan struct {
	data  []byte // a slice of the file's bytes, never a copy
	start int    // byte offset of data[0] in the file
	line  int    // line of data[0] in the file, from 1
}

// yamlSeparator starts the line that ends a YAML document.
var yamlSeparator = []byte("---")

// yamlDocuments hands out the documents of a YAML stream one at a time, as slices of the
// file's bytes: a file is split and parsed document by document without a copy of it, or of
// a list of its documents, being held.
//
// It cuts where apimachinery's YAMLReader (which the agent used before, as kubectl does)
// cuts, so that document indexes and the line numbers in YAML errors stay what they were: a
// line that starts with "---" and has nothing after it but spaces or a comment ends the
// document before it, if there is one, else it is the first line of the next; one with
// anything else after the "---" is a syntax error, and the lines read since the last
// separator go with it.
type yamlDocuments struct {
	data []byte
	pos  int // offset of the next line to read
	line int // number of that line, from 1
}

func newYAMLDocuments(data []byte) *yamlDocuments {
	return &yamlDocuments{data: data, line: 1}
}

// next returns the next document, which may be blank or hold only comments (the caller
// decides what is empty), and true; or false at the end of the stream. A bad separator line
// comes back as an error in place of a document; reading goes on after it.
func (s *yamlDocuments) next() (docSpan, bool, error) {
	start, startLine := s.pos, s.line
	for s.pos < len(s.data) {
		lineStart, lineNo := s.pos, s.line
		line := s.data[lineStart:]
		if i := bytes.IndexByte(line, '\n'); i >= 0 {
			line = line[:i]
			s.pos += i + 1
		} else {
			s.pos = len(s.data)
		}
		s.line++
		if !bytes.HasPrefix(line, yamlSeparator) {
			continue
		}
		rest := bytes.TrimSpace(line[len(yamlSeparator):])
		if len(rest) > 0 && rest[0] != '#' {
			return docSpan{}, true, fmt.Errorf("invalid YAML document separator at line %d: %s", lineNo, rest)
		}
		if lineStart > start {
			return docSpan{data: s.data[start:lineStart], start: start, line: startLine}, true, nil
		}
		// A separator that ends nothing (the first line, or the one after a separator)
		// starts the document it opens, as a YAML document start marker.
	}
	if start < len(s.data) {
		return docSpan{data: s.data[start:], start: start, line: startLine}, true, nil
	}
	return docSpan{}, false, nil
}
