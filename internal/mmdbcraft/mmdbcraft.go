// Package mmdbcraft writes MMDB files byte by byte, search tree included,
// so that tests can build files no honest writer produces: a tree whose
// nodes are shared (a DAG), records that point past the data section, trees
// deeper than the address. The metadata is valid, so the files open.
package mmdbcraft

import (
	"encoding/binary"
	"math"
)

// File is an MMDB file to write: the search tree as records (each node's
// left and right record, raw values), and the data section.
type File struct {
	IPVersion  int // 4 or 6
	RecordSize int // 24, 28 or 32
	Nodes      [][2]uint64
	Data       []byte
}

// Pointer is the record value that points at offset off of the data
// section of a file with n nodes.
func Pointer(n int, off int) uint64 { return uint64(n + 16 + off) }

// Bytes encodes f.
func (f File) Bytes() []byte {
	var out []byte
	for _, n := range f.Nodes {
		l, r := n[0], n[1]
		switch f.RecordSize {
		case 24:
			out = append(out, byte(l>>16), byte(l>>8), byte(l), byte(r>>16), byte(r>>8), byte(r))
		case 28:
			out = append(out, byte(l>>16), byte(l>>8), byte(l), byte(l>>24&0x0F)<<4|byte(r>>24&0x0F), byte(r>>16), byte(r>>8), byte(r))
		default:
			out = binary.BigEndian.AppendUint32(out, uint32(l))
			out = binary.BigEndian.AppendUint32(out, uint32(r))
		}
	}
	out = append(out, make([]byte, 16)...)
	out = append(out, f.Data...)
	out = append(out, "\xAB\xCD\xEFMaxMind.com"...)
	out = Map(out, 7)
	out = Uint16(String(out, "binary_format_major_version"), 2)
	out = Uint16(String(out, "binary_format_minor_version"), 0)
	out = Uint64(String(out, "build_epoch"), 1767225600)
	out = String(String(out, "database_type"), "GeoIP2-City")
	out = Uint16(String(out, "ip_version"), uint16(f.IPVersion))
	out = Uint32(String(out, "node_count"), uint32(len(f.Nodes)))
	out = Uint16(String(out, "record_size"), uint16(f.RecordSize))
	return out
}

// Place is a data-section record with top-level latitude and longitude (the
// flat DB-IP layout).
func Place(lat, lon float64) []byte {
	out := Map(nil, 2)
	out = Double(String(out, "latitude"), lat)
	return Double(String(out, "longitude"), lon)
}

// Map appends the control byte of a map of n pairs (n < 29).
func Map(b []byte, n int) []byte { return append(b, 7<<5|byte(n)) }

// String appends a UTF-8 string shorter than 29 bytes.
func String(b []byte, s string) []byte { return append(append(b, 2<<5|byte(len(s))), s...) }

// Double appends a float64.
func Double(b []byte, v float64) []byte {
	return binary.BigEndian.AppendUint64(append(b, 3<<5|8), math.Float64bits(v))
}

// Uint16 appends a uint16.
func Uint16(b []byte, v uint16) []byte { return binary.BigEndian.AppendUint16(append(b, 5<<5|2), v) }

// Uint32 appends a uint32.
func Uint32(b []byte, v uint32) []byte { return binary.BigEndian.AppendUint32(append(b, 6<<5|4), v) }

// Uint64 appends a uint64 (an extended type: 9 is stored as 9-7).
func Uint64(b []byte, v uint64) []byte { return binary.BigEndian.AppendUint64(append(b, 8, 2), v) }

// Chain is a file whose tree is a DAG: node i points at node i+1 with both
// records, so depth nodes describe 2^depth paths to the one record at the
// bottom; a walk that follows paths instead of nodes never ends.
func Chain(ipVersion, recordSize, depth int) File {
	f := File{IPVersion: ipVersion, RecordSize: recordSize, Data: Place(50.0379, 8.5622)}
	for i := 0; i < depth; i++ {
		next := uint64(i + 1)
		if i == depth-1 {
			next = Pointer(depth, 0)
		}
		f.Nodes = append(f.Nodes, [2]uint64{next, next})
	}
	return f
}
