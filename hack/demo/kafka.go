package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os/exec"
	"regexp"
	"strings"
	"time"

	"portcullis.dev/portcullis/internal/localcluster"
	"portcullis.dev/portcullis/internal/workloads"
)

// topicAuthFailed is how librdkafka (kcat) words Kafka's error 29.
const topicAuthFailed = "Topic authorization failed"

// kafkaTraffic is Cilium's Kafka demo (examples/kafka) through the
// kernel's redirect and the agent's proxy: a kfake broker in the
// kafka-broker pod, kcat and a franz-go client in the empire's pods, a
// table of what each got (checked), a policy change under an open
// connection, and `portcullis monitor`'s Kafka lines.
func (d *demo) kafkaTraffic(ctx context.Context, kubectl string) error {
	pods := map[string]*localcluster.Pod{}
	for _, name := range []string{"kafka-broker", "empire-hq", "empire-outpost", "empire-backup"} {
		p := d.cluster.Pod("default", name)
		if p == nil {
			return fmt.Errorf("no pod default/%s", name)
		}
		pods[name] = p
	}
	// The broker listens on (and advertises) its pod's address; clients
	// bootstrap from its Service's name, as Cilium's Kafka demo does.
	listen := net.JoinHostPort(pods["kafka-broker"].IP.String(), "9092")
	broker, err := d.startWorkload(pods["kafka-broker"], workloads.RoleKafkaBroker, listen, "empire-announce", "deathstar-plans")
	if err != nil {
		return err
	}
	addr := serviceName("kafka-service") + ":9092"
	fmt.Fprintf(d.out, "  broker: franz-go's kfake on %s behind %s (topics empire-announce, deathstar-plans)\n", listen, addr)
	fmt.Fprintf(d.out, "  clients: kcat %s, and franz-go (this binary) in the pods\n\n", kcatVersion())

	mon, err := d.startMonitor(ctx, "--verdict", "FORWARDED,DENIED,ERROR")
	if err != nil {
		return err
	}
	outpostGo, err := d.startWorkload(pods["empire-outpost"], workloads.RoleKafkaClient, addr)
	if err != nil {
		return err
	}
	hqGo, err := d.startWorkload(pods["empire-hq"], workloads.RoleKafkaClient, addr)
	if err != nil {
		return err
	}

	produceRow := func(client, topic, value, want string) l7Row {
		return l7Row{client: client, request: "kcat -P -t " + topic + " <<< " + value, want: want, do: func() string {
			return kcatIn(ctx, pods[client], value+"\n", "-b", addr, "-P", "-t", topic, "-X", "message.timeout.ms=5000")
		}}
	}
	consumeRow := func(client, topic, want string) l7Row {
		return l7Row{client: client, request: "kcat -C -t " + topic + " -o beginning -e", want: want, do: func() string {
			return kcatIn(ctx, pods[client], "", "-b", addr, "-C", "-t", topic, "-o", "beginning", "-e")
		}}
	}
	goRow := func(client string, p *workloads.Process, c workloads.Command, want string) l7Row {
		req := "franz-go " + c.Method + " " + c.Topic
		if c.Group != "" {
			req += " (group " + c.Group + ")"
		}
		return l7Row{client: client, request: req, want: want, do: func() string {
			r, err := p.Do(c, 30*time.Second)
			if err != nil {
				return err.Error()
			}
			// Conns counts the producer's connections (consumes use
			// their own).
			switch {
			case c.Method != workloads.KafkaProduce && r.Code != "OK":
				return r.Code
			case r.Code != "OK":
				return fmt.Sprintf("%s (connections: %d)", r.Code, r.Conns)
			case c.Method == workloads.KafkaProduce:
				return fmt.Sprintf("produced (connections: %d)", r.Conns)
			}
			return messages(r.Body)
		}}
	}
	brokerRow := func(topic, want string) l7Row {
		return l7Row{client: "kafka-broker", request: "read " + topic + " at the broker", want: want, do: func() string {
			r, err := broker.Do(workloads.Command{Method: workloads.KafkaRecords, Topic: topic}, 10*time.Second)
			if err != nil {
				return err.Error()
			}
			if r.Code != "OK" {
				return r.Error
			}
			return messages(r.Body)
		}}
	}

	failures := d.printRows("Kafka (examples/kafka): kcat and franz-go against the broker", []l7Row{
		// The outpost first: once it is refused, the proxy judges the flow.
		produceRow("empire-outpost", "empire-announce", "rebel-lies", topicAuthFailed),
		produceRow("empire-hq", "empire-announce", "parade-on-friday", "produced"),
		produceRow("empire-hq", "deathstar-plans", "thermal-exhaust-port", "produced"),
		brokerRow("empire-announce", `1 message: "parade-on-friday"`),
		consumeRow("empire-outpost", "empire-announce", `1 message: "parade-on-friday"`),
		goRow("empire-outpost", outpostGo, workloads.Command{Method: workloads.KafkaGroupConsume, Topic: "empire-announce", Group: "outposts"}, `1 message: "parade-on-friday"`),
		consumeRow("empire-outpost", "deathstar-plans", topicAuthFailed),
		goRow("empire-outpost", outpostGo, workloads.Command{Method: workloads.KafkaConsume, Topic: "deathstar-plans"}, "TOPIC_AUTHORIZATION_FAILED"),
		consumeRow("empire-backup", "deathstar-plans", `1 message: "thermal-exhaust-port"`),
	})

	// A policy change while the producer's connections are open: its
	// next request is judged by the new policy.
	patch := func(rules string) error {
		return d.kubectl(ctx, kubectl, "patch", "tp", "secure-empire-kafka", "-n", "default", "--type=json", "-p",
			`[{"op":"replace","path":"/specs/0/ingress/0/toPorts/0/rules/kafka","value":`+rules+`}]`)
	}
	announce := workloads.Command{Method: workloads.KafkaProduce, Topic: "empire-announce", Value: "from-hq"}
	failures += d.printRows("Policy change under open Kafka connections (empire-hq → kafka-broker)", []l7Row{
		goRow("empire-hq", hqGo, announce, "produced (connections: 2)"),
	})
	fmt.Fprintln(d.out, "  empire-hq may now produce to deathstar-plans only:")
	if err := patch(`[{"role":"produce","topic":"deathstar-plans"}]`); err != nil {
		return err
	}
	failures += d.printRows("", []l7Row{goRow("empire-hq", hqGo, announce, "TOPIC_AUTHORIZATION_FAILED (connections: 2)")})
	fmt.Fprintln(d.out, "  the rules back as in examples/kafka:")
	if err := patch(`[{"role":"produce","topic":"deathstar-plans"},{"role":"produce","topic":"empire-announce"}]`); err != nil {
		return err
	}
	failures += d.printRows("", []l7Row{goRow("empire-hq", hqGo, announce, "produced (connections: 2)")})

	return d.checkMonitor(mon, "Kafka", "the proxy's Kafka produce and fetch lines, and every denial", kafkaExpected, failures, func(l string) bool {
		return strings.Contains(l, " kafka ") && (strings.Contains(l, " produce ") || strings.Contains(l, " fetch ") || strings.Contains(l, " DENIED "))
	})
}

// kafkaExpected are lines `portcullis monitor` must show for kafkaTraffic.
var kafkaExpected = []func(string) bool{
	verdictLine(monitorExpect{Verdict: "FORWARDED", From: "empire-hq", Has: []string{"kafka produce", "topics=empire-announce"}}),
	verdictLine(monitorExpect{Verdict: "DENIED", From: "empire-outpost", Has: []string{"kafka produce", "topics=empire-announce", "error=29", "TrafficPolicy default/secure-empire-kafka"}}),
	// librdkafka asks for the topic's metadata before it fetches: that
	// request is the one refused.
	verdictLine(monitorExpect{Verdict: "DENIED", From: "empire-outpost", Has: []string{"kafka metadata", "topics=deathstar-plans", "error=29"}}),
	verdictLine(monitorExpect{Verdict: "FORWARDED", From: "empire-backup", Has: []string{"kafka fetch", "topics=deathstar-plans"}}),
}

// messages renders the values a consumer read, one a line.
func messages(body string) string {
	if body == "" {
		return "0 messages"
	}
	vals := strings.Split(body, "\n")
	if len(vals) == 1 {
		return fmt.Sprintf("1 message: %q", vals[0])
	}
	return fmt.Sprintf("%d messages: %q ...", len(vals), vals[0])
}

// kcatIn runs Debian's kcat in pod and says what it did as a user sees it:
// "produced", the messages consumed, or its error.
func kcatIn(ctx context.Context, pod *localcluster.Pod, stdin string, args ...string) string {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	cmd := pod.CommandContext(ctx, append([]string{"kcat"}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	switch {
	case strings.Contains(errb.String(), topicAuthFailed):
		return topicAuthFailed
	case err != nil:
		return fmt.Sprintf("kcat: %v: %s", err, firstLine(strings.TrimSpace(errb.String())))
	case strings.Contains(strings.Join(args, " "), "-P"):
		return "produced"
	}
	return messages(strings.TrimSuffix(out.String(), "\n"))
}

// kcatVersionRE finds kcat's and librdkafka's versions in kcat -V.
var kcatVersionRE = regexp.MustCompile(`Version (\S+) .*(librdkafka \S+)`)

// kcatVersion is kcat's version and its librdkafka's, from kcat -V.
func kcatVersion() string {
	out, err := exec.Command("kcat", "-V").Output()
	if err != nil {
		return "(not found: make deps installs it)"
	}
	if m := kcatVersionRE.FindStringSubmatch(string(out)); m != nil {
		return m[1] + " (" + m[2] + ")"
	}
	return "(version unknown)"
}
