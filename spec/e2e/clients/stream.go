// stream pushes a steady stream of groups through client_golang's push package, the way many Go batch jobs would,
// and prints one line per push until its standard input closes:
//
//	stream URL RATE GROUPS WORKERS
//	-> <unix ms when the push ended> <host:port the 307 pointed at, or -> ok|error <message>
//
// RATE pushes a second are spread over GROUPS groups (job "stream", label instance=g<N>) and run by WORKERS
// goroutines; a push that finds every worker busy is printed as "skipped". The 307's target is read from the
// client's CheckRedirect hook: the Location the director answered with.
package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/push"
)

func main() {
	if len(os.Args) != 5 {
		fmt.Fprintln(os.Stderr, "usage: stream URL RATE GROUPS WORKERS")
		os.Exit(2)
	}
	url := os.Args[1]
	rate, _ := strconv.Atoi(os.Args[2])
	groups, _ := strconv.Atoi(os.Args[3])
	workers, _ := strconv.Atoi(os.Args[4])
	if rate <= 0 || groups <= 0 || workers <= 0 {
		fmt.Fprintln(os.Stderr, "RATE, GROUPS and WORKERS must be positive integers")
		os.Exit(2)
	}

	// Unbuffered, one write per line: the spec follows the stream as it runs.
	var outMu sync.Mutex
	emit := func(line string) {
		outMu.Lock()
		fmt.Fprintf(os.Stdout, "%d %s\n", time.Now().UnixMilli(), line)
		outMu.Unlock()
	}
	transport := &http.Transport{MaxIdleConnsPerHost: workers}

	jobs := make(chan int)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := range jobs {
				target := "-"
				client := &http.Client{
					Transport: transport,
					Timeout:   10 * time.Second,
					CheckRedirect: func(req *http.Request, via []*http.Request) error {
						target = req.URL.Host
						return nil
					},
				}
				gauge := prometheus.NewGauge(prometheus.GaugeOpts{Name: "e2e_value", Help: "The value an end-to-end spec pushed."})
				gauge.Set(float64(n))
				err := push.New(url, "stream").Client(client).Collector(gauge).Grouping("instance", fmt.Sprintf("g%d", n%groups)).Push()
				if err != nil {
					emit(fmt.Sprintf("%s error %s", target, strings.ReplaceAll(err.Error(), "\n", " ")))
				} else {
					emit(fmt.Sprintf("%s ok", target))
				}
			}
		}()
	}

	stop := make(chan struct{})
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		close(stop)
	}()
	ticker := time.NewTicker(time.Second / time.Duration(rate))
	n := 0
loop:
	for {
		select {
		case <-stop:
			break loop
		case <-ticker.C:
			select {
			case jobs <- n:
			default:
				emit("- skipped")
			}
			n++
		}
	}
	ticker.Stop()
	close(jobs)
	wg.Wait()
}
