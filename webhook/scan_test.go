package webhook

import (
	"bytes"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"testing"
)

// valid reports whether data is one JSON value with optional white space around
// it, by the scanner's rules. It must agree with json.Valid.
func valid(data []byte) bool {
	i := skipSpace(data, 0)
	i, err := skipValue(data, i, 0)
	return err == nil && skipSpace(data, i) == len(data)
}

// grammarCases are JSON texts, valid and not, that probe every rule of the grammar.
var grammarCases = []string{
	// valid
	`{}`, `[]`, `""`, `0`, `-0`, `1`, `-1`, `12.5`, `1e5`, `1E+5`, `1e-05`, `-0.0e0`,
	`true`, `false`, `null`, ` {} `, "\t\r\n[ ]\n", `{"a":1}`, `{"a" : [1, {"b":null}] }`,
	`"\"\\\/\b\f\n\r\t"`, `"\u00e9\uD83D\uDE00"`, `"\uDEAD"`, "\"caf\xc3\xa9\"", "\"\xff\xfe\"",
	`[[[[[]]]]]`, `{"a":{"a":{"a":{}}}}`, `{"":""}`, `{"a":1,"a":2}`, `123456789012345678901234567890`,
	`1e999999`, "\"\x7f\"",
	// invalid
	``, ` `, `{`, `}`, `[`, `]`, `{]`, `[}`, `{"a"}`, `{"a":}`, `{"a":1,}`, `[1,]`, `[,1]`, `{,}`,
	`{a:1}`, `{'a':1}`, `{"a":1 "b":2}`, `[1 2]`, `01`, `-`, `-a`, `1.`, `.5`, `1e`, `1e+`, `+1`,
	`0x10`, `NaN`, `Infinity`, `tru`, `truex`, `nul`, `nulll`, `True`, `"abc`, `"\x"`, `"\u12"`,
	`"\u12G4"`, "\"a\x00b\"", "\"a\nb\"", "\"a\tb\"", "\"\x1f\"", `"\`, `{"a":1}}`, `{} {}`, `[]]`,
	"\ufeff{}", "{}\x00", `{"a":1}x`, `{"a\":1}`,
}

func TestSkipValue_grammar(t *testing.T) {
	for _, c := range grammarCases {
		if got, want := valid([]byte(c)), json.Valid([]byte(c)); got != want {
			t.Errorf("valid(%q) = %v, json.Valid = %v", c, got, want)
		}
	}
}

func TestSkipValue_depth(t *testing.T) {
	for _, tt := range []struct {
		name  string
		depth int
		want  bool
	}{
		{name: "at encoding/json's limit", depth: maxDepth, want: true},
		{name: "one past it", depth: maxDepth + 1, want: false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			for _, doc := range [][]byte{
				[]byte(strings.Repeat("[", tt.depth) + strings.Repeat("]", tt.depth)),
				[]byte(strings.Repeat(`{"a":`, tt.depth-1) + "{}" + strings.Repeat("}", tt.depth-1)),
				[]byte(strings.Repeat("[", tt.depth%2) + strings.Repeat(`[{"a":`, (tt.depth-2)/2) + "[{}]" +
					strings.Repeat("}]", (tt.depth-2)/2) + strings.Repeat("]", tt.depth%2)),
			} {
				if got := valid(doc); got != tt.want || json.Valid(doc) != tt.want {
					t.Errorf("%.12s…: valid = %v, json.Valid = %v, want %v", doc, got, json.Valid(doc), tt.want)
				}
			}
			// The same inside an object, where members counts the top level.
			doc := []byte(`{"a":` + strings.Repeat("[", tt.depth-1) + strings.Repeat("]", tt.depth-1) + `}`)
			if _, err := members(doc, "a"); (err == nil) != tt.want {
				t.Errorf("members at depth %d: %v, want ok=%v", tt.depth, err, tt.want)
			}
		})
	}
}

func TestMembers(t *testing.T) {
	tests := []struct {
		name string
		data string
		keys string
		want []string // raw values; "<nil>" for absent
		err  bool
	}{
		{name: "simple", data: `{"a":1,"b":"x","c":null}`, keys: "c a", want: []string{"null", "1"}},
		{name: "absent", data: `{"a":1}`, keys: "b a", want: []string{"<nil>", "1"}},
		{name: "no keys", data: `{"a":1}`, keys: "", want: nil},
		{name: "empty object", data: ` { } `, keys: "a", want: []string{"<nil>"}},
		{name: "last duplicate wins", data: `{"a":1,"a":[2]}`, keys: "a", want: []string{"[2]"}},
		{name: "escaped name", data: `{"\u0061":1}`, keys: "a", want: []string{"1"}},
		{name: "escaped name, last wins", data: `{"a":1,"\u0061":2}`, keys: "a", want: []string{"2"}},
		{name: "name matches exactly", data: `{"A":1,"a ":2}`, keys: "a", want: []string{"<nil>"}},
		{name: "values without white space", data: "{\"a\" :\n {\"b\": [1, 2]} \n}", keys: "a", want: []string{`{"b": [1, 2]}`}},
		{name: "nested names are not members", data: `{"x":{"a":1}}`, keys: "a", want: []string{"<nil>"}},
		{name: "name inside a string", data: `{"x":"\"a\":1"}`, keys: "a", want: []string{"<nil>"}},
		{name: "all twelve", data: `{"a":1,"b":2,"c":3,"d":4,"e":5,"f":6,"g":7,"h":8,"i":9,"j":10,"k":11,"l":12}`,
			keys: "l k j i h g f e d c b a", want: []string{"12", "11", "10", "9", "8", "7", "6", "5", "4", "3", "2", "1"}},
		{name: "array", data: `[]`, keys: "a", err: true},
		{name: "null", data: `null`, keys: "a", err: true},
		{name: "empty", data: ``, keys: "a", err: true},
		{name: "invalid after the member", data: `{"a":1,"b":tru}`, keys: "a", err: true},
		{name: "trailing data", data: `{"a":1} 1`, keys: "a", err: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			vals, err := members([]byte(tt.data), tt.keys)
			if (err != nil) != tt.err {
				t.Fatalf("members error = %v, want error %v", err, tt.err)
			}
			if err != nil {
				return
			}
			for i, w := range tt.want {
				got := string(vals[i])
				if vals[i] == nil {
					got = "<nil>"
				}
				if got != w {
					t.Errorf("vals[%d] = %s, want %s", i, got, w)
				}
			}
			for i := len(tt.want); i < maxKeys; i++ {
				if vals[i] != nil {
					t.Errorf("vals[%d] = %s, want nil", i, vals[i])
				}
			}
		})
	}
}

func TestKeyIndex(t *testing.T) {
	tests := []struct {
		keys, name string
		want       int
	}{
		{"a bb ccc", "a", 0}, {"a bb ccc", "bb", 1}, {"a bb ccc", "ccc", 2},
		{"a bb ccc", "b", -1}, {"a bb ccc", "cc", -1}, {"a bb ccc", "a bb", -1},
		{"a bb ccc", "", -1}, {"", "", -1}, {"", "a", -1}, {"ref", "ref", 0}, {"ref", "refs", -1},
	}
	for _, tt := range tests {
		if got := keyIndex(tt.keys, []byte(tt.name)); got != tt.want {
			t.Errorf("keyIndex(%q, %q) = %d, want %d", tt.keys, tt.name, got, tt.want)
		}
	}
}

func TestMembers_syntaxErrorOffset(t *testing.T) {
	_, err := members([]byte(`{"a":[1,2,}`), "a")
	var se *syntaxError
	if !errors.As(err, &se) || se.off != 10 || !strings.Contains(err.Error(), "byte 10") {
		t.Errorf("error = %v, want a syntax error at byte 10", err)
	}
}

func TestMembers_noAllocs(t *testing.T) {
	body := bigPush(t, 50_000)
	allocs := testing.AllocsPerRun(20, func() {
		if _, err := members(body, pushFields); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("members allocates %v times, want 0", allocs)
	}
}

func TestSkipPlain(t *testing.T) {
	// Every stop byte at every offset within and past an 8-byte word.
	for _, stop := range []byte{'"', '\\', 0x00, 0x1f, '\n'} {
		for n := 0; n < 20; n++ {
			data := append(bytes.Repeat([]byte{'a'}, n), stop, 'b')
			if got := skipPlain(data, 0); got != n {
				t.Errorf("skipPlain(%q) = %d, want %d", data, got, n)
			}
		}
	}
	// Bytes near the stop bytes, and high bytes, are plain.
	plain := []byte{0x20, 0x21, 0x23, 0x5b, 0x5d, 0x7f, 0x80, 0xa2, 0xdc, 0xff, 0xe0, 0x9f}
	for n := 0; n < 20; n++ {
		data := append(bytes.Repeat(plain, 3)[:n], '"')
		if got := skipPlain(data, 0); got != n {
			t.Errorf("skipPlain(%q) = %d, want %d", data, got, n)
		}
	}
}

func TestDecodeString(t *testing.T) {
	for _, raw := range []string{
		`""`, `"abc"`, `"caf\u00e9"`, `"a\"b"`, "\"\xff\"", "\"caf\xc3\xa9\"", `"\uD83D"`, `null`,
		`1`, `true`, `{}`, `[]`,
	} {
		var want string
		wantErr := json.Unmarshal([]byte(raw), &want)
		got, err := decodeString([]byte(raw))
		if got != want || (err == nil) != (wantErr == nil) {
			t.Errorf("decodeString(%s) = %q, %v; encoding/json: %q, %v", raw, got, err, want, wantErr)
		}
	}
	if got, err := decodeString(nil); got != "" || err != nil {
		t.Errorf("decodeString(nil) = %q, %v", got, err)
	}
}

func TestDecodeBool(t *testing.T) {
	for _, raw := range []string{`true`, `false`, `null`, `1`, `"true"`, `{}`} {
		var want bool
		wantErr := json.Unmarshal([]byte(raw), &want)
		got, err := decodeBool([]byte(raw))
		if got != want || (err == nil) != (wantErr == nil) {
			t.Errorf("decodeBool(%s) = %v, %v; encoding/json: %v, %v", raw, got, err, want, wantErr)
		}
	}
}

func TestDecodeInt(t *testing.T) {
	for _, raw := range []string{
		`0`, `-0`, `1`, `-12`, `9223372036854775807`, `-9223372036854775808`, `9223372036854775808`,
		`1.0`, `1e3`, `null`, `"1"`, `true`, `[]`,
	} {
		var want int64
		wantErr := json.Unmarshal([]byte(raw), &want)
		got, err := decodeInt([]byte(raw), 64)
		if got != want || (err == nil) != (wantErr == nil) {
			t.Errorf("decodeInt(%s) = %v, %v; encoding/json: %v, %v", raw, got, err, want, wantErr)
		}
	}
	if _, err := decodeInt([]byte(strconv.Itoa(1<<40)), 32); err == nil {
		t.Error("decodeInt(2^40, 32 bits) succeeded")
	}
}

// FuzzMembers checks the scanner against encoding/json on any input: members fails
// exactly when encoding/json cannot decode the input as an object, and otherwise
// returns the same raw values; valid agrees with json.Valid; and the leaf decoders
// agree with json.Unmarshal on every value found.
func FuzzMembers(f *testing.F) {
	for _, c := range grammarCases {
		f.Add([]byte(c))
		f.Add([]byte(`{"a":` + c + `}`))
	}
	for _, name := range allPayloads(f) {
		f.Add(readPayload(f, name))
	}
	const keys = "ref after deleted repository full_name login action workflow_run inputs a b id"
	f.Fuzz(func(t *testing.T, data []byte) {
		if got, want := valid(data), json.Valid(data); got != want {
			t.Fatalf("valid = %v, json.Valid = %v", got, want)
		}
		got, err := members(data, keys)
		want, wantErr := refMembers(data, keys)
		if (err == nil) != (wantErr == nil) {
			t.Fatalf("members error = %v, encoding/json error = %v", err, wantErr)
		}
		if err != nil {
			return
		}
		for i := range got {
			if !bytes.Equal(got[i], want[i]) || (got[i] == nil) != (want[i] == nil) {
				t.Fatalf("member %d: scanner %q, encoding/json %q", i, got[i], want[i])
			}
			raw := got[i]
			if raw == nil {
				continue
			}
			var s string
			sErr := json.Unmarshal(raw, &s)
			if gs, err := decodeString(raw); gs != s || (err == nil) != (sErr == nil) {
				t.Fatalf("decodeString(%s) = %q, %v; encoding/json %q, %v", raw, gs, err, s, sErr)
			}
			var b bool
			bErr := json.Unmarshal(raw, &b)
			if gb, err := decodeBool(raw); gb != b || (err == nil) != (bErr == nil) {
				t.Fatalf("decodeBool(%s) = %v, %v; encoding/json %v, %v", raw, gb, err, b, bErr)
			}
			var n int64
			nErr := json.Unmarshal(raw, &n)
			if gn, err := decodeInt(raw, 64); gn != n || (err == nil) != (nErr == nil) {
				t.Fatalf("decodeInt(%s) = %v, %v; encoding/json %v, %v", raw, gn, err, n, nErr)
			}
		}
	})
}
