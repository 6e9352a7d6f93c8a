package api

import (
	"bytes"
	"fmt"
	"strconv"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"
)

// maxJSONDepth bounds nesting inside ignored fields, since the scanner
// recurses; it is encoding/json's limit, so both accept the same documents.
const maxJSONDepth = 10000

// maxInterned bounds the per-batch intern table against bodies of
// all-distinct values.
const (
	maxInterned    = 4096
	maxInternedLen = 64
)

// jsonReader is a JSON scanner specialised for ingest bodies: it fills
// wireEvents straight from the bytes, allocating only the strings it keeps.
// encoding/json spent about 5 µs an event here, mostly on reflection and on
// scanning each value twice, which made decoding the ingest bottleneck. It
// follows RFC 8259, decodes strings as encoding/json does (invalid UTF-8
// and lone surrogates become U+FFFD) and FuzzDecodeBatch holds it to
// encoding/json's verdicts.
type jsonReader struct {
	buf      []byte
	pos      int
	scratch  []byte
	interned map[string]string
}

type jsonSyntaxError struct {
	offset int
	msg    string
}

func (r *jsonReader) errorf(format string, args ...any) *jsonSyntaxError {
	return &jsonSyntaxError{offset: r.pos, msg: fmt.Sprintf(format, args...)}
}

// unexpected reports the byte at the current position, or the end of the body.
func (r *jsonReader) unexpected(context string) *jsonSyntaxError {
	if r.pos >= len(r.buf) {
		return r.errorf("body ends in the middle of a JSON value")
	}
	return r.errorf("invalid character %q %s", r.buf[r.pos], context)
}

func (r *jsonReader) skipSpace() {
	for r.pos < len(r.buf) {
		switch r.buf[r.pos] {
		case ' ', '\t', '\n', '\r':
			r.pos++
		default:
			return
		}
	}
}

// expect consumes c, after optional whitespace.
func (r *jsonReader) expect(c byte, context string) *jsonSyntaxError {
	r.skipSpace()
	if r.pos < len(r.buf) && r.buf[r.pos] == c {
		r.pos++
		r.skipSpace()
		return nil
	}
	return r.unexpected(context)
}

// event reads one value at the current position into w; a value that is not
// an object is skipped and reported as such.
func (r *jsonReader) event(w *wireEvent) (isObject bool, err *jsonSyntaxError) {
	if r.pos >= len(r.buf) || r.buf[r.pos] != '{' {
		return false, r.skipValue(0)
	}
	r.pos++
	r.skipSpace()
	if r.pos < len(r.buf) && r.buf[r.pos] == '}' {
		r.pos++
		return true, nil
	}
	for {
		if r.pos >= len(r.buf) || r.buf[r.pos] != '"' {
			return true, r.unexpected("in object (expected a field name)")
		}
		key, err := r.stringBytes()
		if err != nil {
			return true, err
		}
		f := lookupField(key)
		if err := r.expect(':', "after a field name (expected ':')"); err != nil {
			return true, err
		}
		if f == fUnknown {
			err = r.skipValue(1)
		} else {
			err = r.fieldValue(w, f)
		}
		if err != nil {
			return true, err
		}
		if done, err := r.nextElement('}', "in object (expected ',' or '}')"); done || err != nil {
			return true, err
		}
	}
}

// fieldValue reads the value of a known field. A value of the wrong type is
// skipped and marked, so that every wrong field of every event is reported.
func (r *jsonReader) fieldValue(w *wireEvent, f field) *jsonSyntaxError {
	if r.pos >= len(r.buf) {
		return r.unexpected("")
	}
	c := r.buf[r.pos]
	if c == 'n' {
		w.clear(f)
		return r.literal("null")
	}
	switch {
	case f < firstInt:
		if c != '"' {
			w.markWrong(f)
			return r.skipValue(1)
		}
		b, err := r.stringBytes()
		if err != nil {
			return err
		}
		if interned(f) {
			w.str[f] = r.intern(b)
		} else {
			w.str[f] = string(b)
		}
	case f < fStream:
		if c != '-' && (c < '0' || c > '9') {
			w.markWrong(f)
			return r.skipValue(1)
		}
		num, integer, err := r.number()
		if err != nil {
			return err
		}
		if f < firstFloat {
			n, perr := strconv.ParseInt(string(num), 10, 64)
			if !integer || perr != nil {
				w.markWrong(f)
				return nil
			}
			w.ints[f-firstInt] = n
		} else {
			x, perr := strconv.ParseFloat(string(num), 64)
			if perr != nil {
				w.markWrong(f)
				return nil
			}
			w.floats[f-firstFloat] = x
		}
	default:
		switch c {
		case 't':
			w.stream = true
			if err := r.literal("true"); err != nil {
				return err
			}
		case 'f':
			w.stream = false
			if err := r.literal("false"); err != nil {
				return err
			}
		default:
			w.markWrong(f)
			return r.skipValue(1)
		}
	}
	w.set(f)
	return nil
}

func (r *jsonReader) intern(b []byte) string {
	if s, ok := r.interned[string(b)]; ok {
		return s
	}
	s := string(b)
	if len(b) <= maxInternedLen && len(r.interned) < maxInterned {
		r.interned[s] = s
	}
	return s
}

// skipValue checks and skips any JSON value.
func (r *jsonReader) skipValue(depth int) *jsonSyntaxError {
	if depth > maxJSONDepth {
		return r.errorf("values nested more than %d deep", maxJSONDepth)
	}
	if r.pos >= len(r.buf) {
		return r.unexpected("")
	}
	switch c := r.buf[r.pos]; {
	case c == '{':
		r.pos++
		r.skipSpace()
		if r.pos < len(r.buf) && r.buf[r.pos] == '}' {
			r.pos++
			return nil
		}
		for {
			if r.pos >= len(r.buf) || r.buf[r.pos] != '"' {
				return r.unexpected("in object (expected a field name)")
			}
			if _, err := r.stringBytes(); err != nil {
				return err
			}
			if err := r.expect(':', "after a field name (expected ':')"); err != nil {
				return err
			}
			if err := r.skipValue(depth + 1); err != nil {
				return err
			}
			if done, err := r.nextElement('}', "in object (expected ',' or '}')"); done || err != nil {
				return err
			}
		}
	case c == '[':
		r.pos++
		r.skipSpace()
		if r.pos < len(r.buf) && r.buf[r.pos] == ']' {
			r.pos++
			return nil
		}
		for {
			if err := r.skipValue(depth + 1); err != nil {
				return err
			}
			if done, err := r.nextElement(']', "in array (expected ',' or ']')"); done || err != nil {
				return err
			}
		}
	case c == '"':
		_, err := r.stringBytes()
		return err
	case c == '-' || (c >= '0' && c <= '9'):
		_, _, err := r.number()
		return err
	case c == 't':
		return r.literal("true")
	case c == 'f':
		return r.literal("false")
	case c == 'n':
		return r.literal("null")
	}
	return r.unexpected("looking for the beginning of a value")
}

// nextElement consumes the separator after a container element: a comma
// (more follows) or the closing byte (done).
func (r *jsonReader) nextElement(closing byte, context string) (done bool, err *jsonSyntaxError) {
	r.skipSpace()
	if r.pos < len(r.buf) {
		switch r.buf[r.pos] {
		case ',':
			r.pos++
			r.skipSpace()
			return false, nil
		case closing:
			r.pos++
			return true, nil
		}
	}
	return true, r.unexpected(context)
}

func (r *jsonReader) literal(word string) *jsonSyntaxError {
	if !bytes.HasPrefix(r.buf[r.pos:], []byte(word)) {
		for i := 0; i < len(word) && r.pos < len(r.buf) && r.buf[r.pos] == word[i]; i++ {
			r.pos++
		}
		return r.unexpected("in literal " + word)
	}
	r.pos += len(word)
	return nil
}

// number scans a number per RFC 8259 and returns its text and whether it is
// written as an integer (no fraction, no exponent).
func (r *jsonReader) number() (num []byte, integer bool, err *jsonSyntaxError) {
	start := r.pos
	if r.buf[r.pos] == '-' {
		r.pos++
	}
	switch {
	case r.pos < len(r.buf) && r.buf[r.pos] == '0':
		r.pos++
	case r.pos < len(r.buf) && r.buf[r.pos] >= '1' && r.buf[r.pos] <= '9':
		r.digits()
	default:
		return nil, false, r.unexpected("in numeric literal")
	}
	integer = true
	if r.pos < len(r.buf) && r.buf[r.pos] == '.' {
		integer = false
		r.pos++
		if r.digits() == 0 {
			return nil, false, r.unexpected("after decimal point in numeric literal")
		}
	}
	if r.pos < len(r.buf) && (r.buf[r.pos] == 'e' || r.buf[r.pos] == 'E') {
		integer = false
		r.pos++
		if r.pos < len(r.buf) && (r.buf[r.pos] == '+' || r.buf[r.pos] == '-') {
			r.pos++
		}
		if r.digits() == 0 {
			return nil, false, r.unexpected("in exponent of numeric literal")
		}
	}
	return r.buf[start:r.pos], integer, nil
}

func (r *jsonReader) digits() int {
	start := r.pos
	for r.pos < len(r.buf) && r.buf[r.pos] >= '0' && r.buf[r.pos] <= '9' {
		r.pos++
	}
	return r.pos - start
}

// stringBytes reads the string at the current position (its opening quote)
// and returns its decoded content, valid until the next call.
func (r *jsonReader) stringBytes() ([]byte, *jsonSyntaxError) {
	start := r.pos + 1
	ascii := true
	for i := start; i < len(r.buf); i++ {
		switch c := r.buf[i]; {
		case c == '"':
			r.pos = i + 1
			if s := r.buf[start:i]; ascii || utf8.Valid(s) {
				return s, nil
			}
			r.scratch = appendValidUTF8(r.scratch[:0], r.buf[start:i])
			return r.scratch, nil
		case c == '\\':
			return r.escapedString(start)
		case c < 0x20:
			r.pos = i
			return nil, r.errorf("control character %q in string literal", c)
		case c >= utf8.RuneSelf:
			ascii = false
		}
	}
	r.pos = len(r.buf)
	return nil, r.unexpected("")
}

// escapedString is stringBytes' path for strings holding escapes.
func (r *jsonReader) escapedString(start int) ([]byte, *jsonSyntaxError) {
	out := r.scratch[:0]
	i := start
	for i < len(r.buf) {
		c := r.buf[i]
		switch {
		case c == '"':
			r.pos = i + 1
			r.scratch = out
			return out, nil
		case c < 0x20:
			r.pos = i
			return nil, r.errorf("control character %q in string literal", c)
		case c >= utf8.RuneSelf:
			rn, size := utf8.DecodeRune(r.buf[i:])
			out = utf8.AppendRune(out, rn)
			i += size
			continue
		case c != '\\':
			out = append(out, c)
			i++
			continue
		}
		if i+1 >= len(r.buf) {
			break
		}
		switch e := r.buf[i+1]; e {
		case '"', '\\', '/':
			out = append(out, e)
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'u':
			rn, size, ok := unicodeEscape(r.buf[i:])
			if !ok {
				r.pos = i
				return nil, r.errorf("invalid \\u escape in string literal")
			}
			out = utf8.AppendRune(out, rn)
			i += size
			continue
		default:
			r.pos = i
			return nil, r.errorf("invalid escape %q in string literal", "\\"+string(rune(e)))
		}
		i += 2
	}
	r.pos = len(r.buf)
	return nil, r.unexpected("")
}

// unicodeEscape decodes \uXXXX at b, joining a surrogate pair; a lone
// surrogate becomes U+FFFD, as in encoding/json.
func unicodeEscape(b []byte) (rune, int, bool) {
	r1, ok := hex4(b)
	if !ok {
		return 0, 0, false
	}
	if !utf16.IsSurrogate(r1) {
		return r1, 6, true
	}
	if r2, ok := hex4(b[6:]); ok {
		if rn := utf16.DecodeRune(r1, r2); rn != unicode.ReplacementChar {
			return rn, 12, true
		}
	}
	return unicode.ReplacementChar, 6, true
}

// hex4 decodes the XXXX of a \uXXXX at the start of b.
func hex4(b []byte) (rune, bool) {
	if len(b) < 6 || b[0] != '\\' || b[1] != 'u' {
		return 0, false
	}
	var r rune
	for _, c := range b[2:6] {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c -= 'a' - 10
		case c >= 'A' && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}

// appendValidUTF8 appends s with each invalid byte replaced by U+FFFD, as
// encoding/json decodes strings.
func appendValidUTF8(out, s []byte) []byte {
	for len(s) > 0 {
		rn, size := utf8.DecodeRune(s)
		out = utf8.AppendRune(out, rn)
		s = s[size:]
	}
	return out
}
