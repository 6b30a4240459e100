// apidecode reads a Pushgateway /api/v1/metrics answer on stdin and decodes it the way a Go consumer of the
// Pushgateway's api/v1 package must: typed structs with the package's own field names and JSON tags (time_stamp as a
// time.Time, so RFC 3339; values as strings), unknown fields refused, every value a float in Go's syntax. It prints
// one normalised JSON line per group (labels, last_push_successful, families) so a spec can compare answers as sets
// of groups. Any deviation exits 1 with the reason on stderr.
package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"time"
)

// family is the Pushgateway api/v1 `metrics` struct: one metric family of a group.
type family struct {
	Timestamp time.Time `json:"time_stamp"`
	Type      string    `json:"type"`
	Help      string    `json:"help,omitempty"`
	Metrics   []metric  `json:"metrics"`
}

// metric is one encodableMetric: labels plus value, or count/sum with quantiles or buckets.
type metric struct {
	Labels    map[string]string `json:"labels"`
	Value     *string           `json:"value,omitempty"`
	Quantiles map[string]string `json:"quantiles,omitempty"`
	Buckets   map[string]string `json:"buckets,omitempty"`
	Count     *string           `json:"count,omitempty"`
	Sum       *string           `json:"sum,omitempty"`
}

type response struct {
	Status string                       `json:"status"`
	Data   []map[string]json.RawMessage `json:"data"`
}

type normalised struct {
	Labels             map[string]string `json:"labels"`
	LastPushSuccessful bool              `json:"last_push_successful"`
	Families           map[string]family `json:"families"`
}

func strict(raw []byte, into interface{}) error {
	decoder := json.NewDecoder(bytes.NewReader(raw))
	decoder.DisallowUnknownFields()
	if err := decoder.Decode(into); err != nil {
		return err
	}
	if decoder.More() {
		return fmt.Errorf("trailing data")
	}
	return nil
}

func float(what, text string) error {
	if _, err := strconv.ParseFloat(text, 64); err != nil {
		return fmt.Errorf("%s: %q is not a Go float: %v", what, text, err)
	}
	return nil
}

func check(name string, f family) error {
	if f.Timestamp.IsZero() {
		return fmt.Errorf("%s: no time_stamp", name)
	}
	if f.Metrics == nil {
		return fmt.Errorf("%s: no metrics array", name)
	}
	for i, m := range f.Metrics {
		where := fmt.Sprintf("%s.metrics[%d]", name, i)
		if m.Labels == nil {
			return fmt.Errorf("%s: no labels", where)
		}
		switch f.Type {
		case "GAUGE", "COUNTER", "UNTYPED":
			if m.Value == nil || m.Count != nil || m.Sum != nil || m.Quantiles != nil || m.Buckets != nil {
				return fmt.Errorf("%s: a %s carries exactly a value", where, f.Type)
			}
			if err := float(where, *m.Value); err != nil {
				return err
			}
		case "SUMMARY", "HISTOGRAM":
			if m.Value != nil || m.Count == nil || m.Sum == nil {
				return fmt.Errorf("%s: a %s carries count and sum, no value", where, f.Type)
			}
			for _, text := range []string{*m.Count, *m.Sum} {
				if err := float(where, text); err != nil {
					return err
				}
			}
			for bound, text := range m.Quantiles {
				if err := float(where, bound); err != nil {
					return err
				}
				if err := float(where, text); err != nil {
					return err
				}
			}
			for bound, text := range m.Buckets {
				if err := float(where, bound); err != nil {
					return err
				}
				if err := float(where, text); err != nil {
					return err
				}
			}
		default:
			return fmt.Errorf("%s: unknown type %q", name, f.Type)
		}
	}
	return nil
}

func run() error {
	input, err := io.ReadAll(os.Stdin)
	if err != nil {
		return err
	}
	var doc response
	if err := strict(input, &doc); err != nil {
		return fmt.Errorf("response: %v", err)
	}
	if doc.Status != "success" || doc.Data == nil {
		return fmt.Errorf("status %q, data present %v", doc.Status, doc.Data != nil)
	}
	lines := []string{}
	for i, group := range doc.Data {
		out := normalised{Families: map[string]family{}}
		rawLabels, ok := group["labels"]
		if !ok {
			return fmt.Errorf("data[%d]: no labels", i)
		}
		if err := strict(rawLabels, &out.Labels); err != nil {
			return fmt.Errorf("data[%d].labels: %v", i, err)
		}
		rawSuccess, ok := group["last_push_successful"]
		if !ok {
			return fmt.Errorf("data[%d]: no last_push_successful", i)
		}
		if err := strict(rawSuccess, &out.LastPushSuccessful); err != nil {
			return fmt.Errorf("data[%d].last_push_successful: %v", i, err)
		}
		for name, raw := range group {
			if name == "labels" || name == "last_push_successful" {
				continue
			}
			var f family
			if err := strict(raw, &f); err != nil {
				return fmt.Errorf("data[%d].%s: %v", i, name, err)
			}
			if err := check(name, f); err != nil {
				return fmt.Errorf("data[%d]: %v", i, err)
			}
			out.Families[name] = f
		}
		if _, ok := out.Families["push_time_seconds"]; !ok {
			return fmt.Errorf("data[%d]: no push_time_seconds", i)
		}
		line, err := json.Marshal(out)
		if err != nil {
			return err
		}
		lines = append(lines, string(line))
	}
	sort.Strings(lines)
	for _, line := range lines {
		fmt.Println(line)
	}
	return nil
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "apidecode:", err)
		os.Exit(1)
	}
}
