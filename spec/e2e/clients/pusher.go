// pusher pushes one gauge through client_golang's push package, the way Go batch jobs do.
//
//	pusher URL push|add|delete JOB VALUE [NAME=VALUE...]
//
// Grouping labels are added in the order given, but client_golang keeps them in a map, so the URL order is random.
// Exit status 0 on success; the error is printed on stderr otherwise.
package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/push"
)

func main() {
	if len(os.Args) < 5 {
		fmt.Fprintln(os.Stderr, "usage: pusher URL push|add|delete JOB VALUE [NAME=VALUE...]")
		os.Exit(2)
	}
	url, action, job := os.Args[1], os.Args[2], os.Args[3]
	value, err := strconv.ParseFloat(os.Args[4], 64)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	gauge := prometheus.NewGauge(prometheus.GaugeOpts{Name: "e2e_value", Help: "The value an end-to-end spec pushed."})
	gauge.Set(value)
	pusher := push.New(url, job).Collector(gauge)
	for _, pair := range os.Args[5:] {
		name, labelValue, _ := strings.Cut(pair, "=")
		pusher = pusher.Grouping(name, labelValue)
	}
	switch action {
	case "push":
		err = pusher.Push()
	case "add":
		err = pusher.Add()
	case "delete":
		err = pusher.Delete()
	default:
		err = fmt.Errorf("unknown action %q", action)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
