package webhook

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"math/bits"
	"strconv"
	"unicode/utf8"
)

// This file holds a small JSON scanner. It walks one object, hands back the raw
// bytes of the few members Parse needs and skips every other value without
// decoding it, while checking the whole text against the JSON grammar exactly as
// encoding/json does (json.Valid agrees with it, fuzzed in scan_test.go). Skipped
// values are never materialised, so a 300 KB push with 2,000 commits costs one
// pass over the bytes and no allocation.
//
// Semantics, chosen to match encoding/json decoding into map[string]json.RawMessage:
// member names match exactly (escapes in names are decoded first), and when a name
// occurs twice the last one wins. Invalid UTF-8 inside strings is accepted, as
// encoding/json accepts it; string values are decoded by str, which replaces it
// with U+FFFD like encoding/json.

// maxDepth is the deepest nesting of objects and arrays accepted; it is
// encoding/json's own limit (maxNestingDepth in encoding/json/scanner.go), so both
// reject the same documents.
const maxDepth = 10000

// maxKeys is the most members one call of members can look for.
const maxKeys = 12

// syntaxError is a JSON grammar error at a byte offset of the scanned text.
type syntaxError struct {
	off int
	msg string
}

func (e *syntaxError) Error() string {
	return "invalid JSON at byte " + strconv.Itoa(e.off) + ": " + e.msg
}

// members scans data, which must be one JSON object with optional white space
// around it, and returns in vals[i] the raw value (no surrounding white space) of
// the last member named by the i-th word of keys, a space-separated list of at most
// maxKeys names. Absent members are nil. Any deviation from the JSON grammar
// anywhere in data, including in skipped values, is an error.
func members(data []byte, keys string) (vals [maxKeys][]byte, err error) {
	i := skipSpace(data, 0)
	if i == len(data) {
		return vals, &syntaxError{i, "empty input"}
	}
	if data[i] != '{' {
		return vals, &syntaxError{i, "not an object"}
	}
	i = skipSpace(data, i+1)
	if i < len(data) && data[i] == '}' {
		i++
	} else {
		for {
			if i >= len(data) || data[i] != '"' {
				return vals, &syntaxError{i, "want a member name"}
			}
			kstart := i
			var escaped bool
			i, escaped, err = skipString(data, i)
			if err != nil {
				return vals, err
			}
			name := data[kstart+1 : i-1]
			i = skipSpace(data, i)
			if i >= len(data) || data[i] != ':' {
				return vals, &syntaxError{i, "want ':' after a member name"}
			}
			i = skipSpace(data, i+1)
			vstart := i
			if i, err = skipValue(data, i, 1); err != nil {
				return vals, err
			}
			if escaped {
				var s string
				if err := json.Unmarshal(data[kstart:kstart+len(name)+2], &s); err != nil {
					return vals, err
				}
				name = []byte(s)
			}
			if k := keyIndex(keys, name); k >= 0 {
				vals[k] = data[vstart:i]
			}
			i = skipSpace(data, i)
			if i >= len(data) {
				return vals, &syntaxError{i, "unterminated object"}
			}
			if data[i] == '}' {
				i++
				break
			}
			if data[i] != ',' {
				return vals, &syntaxError{i, "want ',' or '}' after an object member"}
			}
			i = skipSpace(data, i+1)
		}
	}
	if i = skipSpace(data, i); i != len(data) {
		return vals, &syntaxError{i, "data after the top-level value"}
	}
	return vals, nil
}

// keyIndex returns the position of name among the space-separated words of keys,
// or -1.
func keyIndex(keys string, name []byte) int {
	if keys == "" {
		return -1
	}
	// A plain loop: the words are short, and strings.Cut's IndexByte call cost
	// more than the comparison itself (14% of Parse on a small push).
	for k := 0; ; k++ {
		j := 0
		for j < len(keys) && keys[j] != ' ' {
			j++
		}
		if keys[:j] == string(name) { // no allocation: compared in place
			return k
		}
		if j == len(keys) {
			return -1
		}
		keys = keys[j+1:]
	}
}

// isSpace reports whether c is JSON white space.
func isSpace(c byte) bool {
	return c == ' ' || c == '\n' || c == '\r' || c == '\t'
}

// skipSpace returns the index of the first byte at or after i that is not white
// space.
func skipSpace(data []byte, i int) int {
	for i < len(data) && isSpace(data[i]) {
		i++
	}
	return i
}

// skipValue checks the JSON value that starts at data[i] and returns the index just
// after it. depth is the number of objects and arrays that enclose it.
func skipValue(data []byte, i, depth int) (int, error) {
	if i >= len(data) {
		return i, &syntaxError{i, "want a value, found the end"}
	}
	switch c := data[i]; c {
	case '"':
		i, _, err := skipString(data, i)
		return i, err
	case '{':
		return skipObject(data, i, depth+1)
	case '[':
		return skipArray(data, i, depth+1)
	case 't':
		return skipLiteral(data, i, "true")
	case 'f':
		return skipLiteral(data, i, "false")
	case 'n':
		return skipLiteral(data, i, "null")
	default:
		if c == '-' || c >= '0' && c <= '9' {
			return skipNumber(data, i)
		}
		return i, &syntaxError{i, "want a value"}
	}
}

// skipObject checks the object that starts at data[i] at nesting depth depth and
// returns the index after its closing brace.
func skipObject(data []byte, i, depth int) (int, error) {
	if depth > maxDepth {
		return i, &syntaxError{i, "nested too deeply"}
	}
	i = skipSpace(data, i+1)
	if i < len(data) && data[i] == '}' {
		return i + 1, nil
	}
	for {
		if i >= len(data) || data[i] != '"' {
			return i, &syntaxError{i, "want a member name"}
		}
		var err error
		if i, _, err = skipString(data, i); err != nil {
			return i, err
		}
		i = skipSpace(data, i)
		if i >= len(data) || data[i] != ':' {
			return i, &syntaxError{i, "want ':' after a member name"}
		}
		if i, err = skipValue(data, skipSpace(data, i+1), depth); err != nil {
			return i, err
		}
		i = skipSpace(data, i)
		if i >= len(data) {
			return i, &syntaxError{i, "unterminated object"}
		}
		switch data[i] {
		case '}':
			return i + 1, nil
		case ',':
			i = skipSpace(data, i+1)
		default:
			return i, &syntaxError{i, "want ',' or '}' after an object member"}
		}
	}
}

// skipArray checks the array that starts at data[i] at nesting depth depth and
// returns the index after its closing bracket.
func skipArray(data []byte, i, depth int) (int, error) {
	if depth > maxDepth {
		return i, &syntaxError{i, "nested too deeply"}
	}
	i = skipSpace(data, i+1)
	if i < len(data) && data[i] == ']' {
		return i + 1, nil
	}
	for {
		var err error
		if i, err = skipValue(data, i, depth); err != nil {
			return i, err
		}
		i = skipSpace(data, i)
		if i >= len(data) {
			return i, &syntaxError{i, "unterminated array"}
		}
		switch data[i] {
		case ']':
			return i + 1, nil
		case ',':
			i = skipSpace(data, i+1)
		default:
			return i, &syntaxError{i, "want ',' or ']' after an array element"}
		}
	}
}

// skipLiteral checks that lit (true, false or null) starts at data[i].
func skipLiteral(data []byte, i int, lit string) (int, error) {
	if !bytes.HasPrefix(data[i:], []byte(lit)) {
		return i, &syntaxError{i, "want " + lit}
	}
	return i + len(lit), nil
}

// skipNumber checks the number that starts at data[i]:
// -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func skipNumber(data []byte, i int) (int, error) {
	start := i
	if data[i] == '-' {
		i++
	}
	switch {
	case i < len(data) && data[i] == '0':
		i++
	case i < len(data) && data[i] >= '1' && data[i] <= '9':
		i = skipDigits(data, i+1)
	default:
		return i, &syntaxError{start, "malformed number"}
	}
	if i < len(data) && data[i] == '.' {
		j := skipDigits(data, i+1)
		if j == i+1 {
			return j, &syntaxError{start, "malformed number"}
		}
		i = j
	}
	if i < len(data) && (data[i] == 'e' || data[i] == 'E') {
		i++
		if i < len(data) && (data[i] == '+' || data[i] == '-') {
			i++
		}
		j := skipDigits(data, i)
		if j == i {
			return j, &syntaxError{start, "malformed number"}
		}
		i = j
	}
	return i, nil
}

func skipDigits(data []byte, i int) int {
	for i < len(data) && data[i] >= '0' && data[i] <= '9' {
		i++
	}
	return i
}

// strStop marks with a non-zero byte the bytes that end a run of plain string
// content: the quote, the backslash and the control characters JSON forbids
// unescaped. A constant string, so the table is immutable.
const strStop = "" +
	"\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01" +
	"\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01" +
	"\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00" +
	"\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00" +
	"\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00" +
	"\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00" +
	"\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00" +
	"\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00" +
	"\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00" +
	"\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00" +
	"\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00" +
	"\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00" +
	"\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00" +
	"\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00" +
	"\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00" +
	"\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"

// skipString checks the string that starts with the quote at data[i] and returns
// the index after its closing quote, and whether it contains escapes.
func skipString(data []byte, i int) (end int, escaped bool, err error) {
	start := i
	i++
	for {
		i = skipPlain(data, i)
		if i >= len(data) {
			return i, escaped, &syntaxError{start, "unterminated string"}
		}
		switch data[i] {
		case '"':
			return i + 1, escaped, nil
		case '\\':
			escaped = true
			if i+1 >= len(data) {
				return i, escaped, &syntaxError{start, "unterminated string"}
			}
			switch data[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if i+6 > len(data) || !isHex4(data[i+2:i+6]) {
					return i, escaped, &syntaxError{i, `malformed \u escape`}
				}
				i += 6
			default:
				return i, escaped, &syntaxError{i, "malformed escape"}
			}
		default:
			return i, escaped, &syntaxError{i, "control character in string"}
		}
	}
}

// skipPlain returns the index of the first byte at or after i that ends plain
// string content (see strStop). It tests eight bytes at a time: with
// x the little-endian word, (x - 0x01…01·n) & ^x & 0x80…80 is non-zero exactly when
// some byte of x is below n, and its lowest set bit marks the first such byte
// (borrows only flag bytes above it). A quote or a backslash is a zero byte of
// x^0x22…22 or x^0x5c…5c.
func skipPlain(data []byte, i int) int {
	const (
		ones  = 0x0101010101010101
		highs = 0x8080808080808080
	)
	for i+8 <= len(data) {
		x := binary.LittleEndian.Uint64(data[i:])
		q := x ^ (ones * '"')
		b := x ^ (ones * '\\')
		m := ((x-ones*0x20) & ^x | (q-ones) & ^q | (b-ones) & ^b) & highs
		if m != 0 {
			return i + bits.TrailingZeros64(m)/8
		}
		i += 8
	}
	for i < len(data) && strStop[data[i]] == 0 {
		i++
	}
	return i
}

func isHex4(b []byte) bool {
	for _, c := range b {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			return false
		}
	}
	return true
}

// The decoders below turn one raw, already checked JSON value into a Go value
// exactly as json.Unmarshal would into a field of that type: null leaves the zero
// value, a value of another type is an error. They take fast paths for the common
// case and defer to encoding/json for the rest.

// decodeString decodes a JSON string (or null) without allocating more than the
// result when it holds no escapes and is valid UTF-8.
func decodeString(raw []byte) (string, error) {
	if len(raw) >= 2 && raw[0] == '"' && raw[len(raw)-1] == '"' {
		s := raw[1 : len(raw)-1]
		if bytes.IndexByte(s, '\\') < 0 && utf8.Valid(s) {
			return string(s), nil
		}
	}
	if raw == nil || string(raw) == "null" {
		return "", nil
	}
	var s string
	err := json.Unmarshal(raw, &s)
	return s, err
}

// decodeBool decodes a JSON boolean (or null).
func decodeBool(raw []byte) (bool, error) {
	switch string(raw) {
	case "true":
		return true, nil
	case "false", "null", "":
		return false, nil
	}
	return false, errors.New("not a boolean")
}

// decodeInt decodes a JSON integer (or null) that fits in bits bits, as
// encoding/json does for an integer field: "1.0" and "1e3" are errors.
func decodeInt(raw []byte, bits int) (int64, error) {
	if raw == nil || string(raw) == "null" {
		return 0, nil
	}
	n, err := strconv.ParseInt(string(raw), 10, bits)
	if err != nil {
		return 0, errors.New("not an integer of " + strconv.Itoa(bits) + " bits")
	}
	return n, nil
}
