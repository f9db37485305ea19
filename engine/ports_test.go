package engine

import (
	"strings"
	"testing"
)

func TestParsePublish(t *testing.T) {
	for in, want := range map[string]PortMapping{
		"8080:80":             {HostIP: "127.0.0.1", HostPort: 8080, ContainerPort: 80, Protocol: "tcp"},
		"8080:80/tcp":         {HostIP: "127.0.0.1", HostPort: 8080, ContainerPort: 80, Protocol: "tcp"},
		"0.0.0.0:5432:5432":   {HostIP: "0.0.0.0", HostPort: 5432, ContainerPort: 5432, Protocol: "tcp"},
		"[::1]:9000:9000/tcp": {HostIP: "::1", HostPort: 9000, ContainerPort: 9000, Protocol: "tcp"},
	} {
		got, err := ParsePublish(in)
		if err != nil || got != want {
			t.Errorf("ParsePublish(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	for in, msg := range map[string]string{
		"80":            "give the host port too",
		"8080:80/udp":   "only tcp",
		"70000:80":      "host port",
		"8080:x":        "container port",
		"nohost:80:80":  "not an IP address",
		"8080:80/sctp":  "only tcp",
		":80":           "host port",
		"1.2.3.4:0:80":  "host port",
		"8080:80:extra": "not an IP address",
	} {
		_, err := ParsePublish(in)
		if err == nil || !strings.Contains(err.Error(), msg) || !strings.Contains(err.Error(), in) {
			t.Errorf("ParsePublish(%q) = %v, want an error naming it and saying %q", in, err, msg)
		}
	}
}
