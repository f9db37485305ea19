// Package remote carries the engine API over SSH, between the devbox
// command on the host (Client) and the guest agent in the VM (Serve),
// which runs the local engine.
//
// Each call is one SSH channel of type ChannelType whose open request
// carries the call as JSON. The channel's data is the call's stream: a
// container's stdin one way and stdout the other (stderr as SSH extended
// data), an archive for import and export. Requests on the channel carry
// the rest: from the host, window-change and signal as in an SSH session;
// from the guest, progress events and, last, the result. Closing the
// channel from the host cancels the call.
//
// The guest reaches registries through the host: it opens DialChannel
// channels that the host connects to the address given, resolved and
// routed on the host (so a registry on the host's 127.0.0.1 and the
// host's VPN, DNS and proxies work as they do natively), and it asks the
// host for registry credentials on AuthChannel channels, answered from
// the user's docker config and credential helpers on the host. Nothing
// the guest stores is kept on the host too.
package remote

import (
	"encoding/json"

	"github.com/devbox-dev/devbox/engine"
	"github.com/devbox-dev/devbox/images"
)

// Channel types and request types of the protocol.
const (
	// ChannelType is a channel carrying one engine call (host to guest).
	ChannelType = "engine@devbox"
	// DialChannel asks the host to connect to an address (guest to host);
	// its extra data is a dialRequest.
	DialChannel = "dial@devbox"
	// AuthChannel asks the host for a registry's credentials (guest to
	// host); its extra data is the registry's name and the host writes an
	// authn.AuthConfig as JSON, then closes.
	AuthChannel = "auth@devbox"

	requestProgress = "progress@devbox"
	requestResult   = "result@devbox"
	requestSignal   = "signal"
	requestWindow   = "window-change"
)

// The calls.
const (
	opPull   = "pull"
	opImages = "images"
	opRmi    = "rmi"
	opImport = "import"
	opExport = "export"
	opRun    = "run"
	opPs     = "ps"
	opRm     = "rm"
)

// call is an engine call, sent when its channel opens.
type call struct {
	Op    string `json:"op"`
	Ref   string `json:"ref,omitempty"`
	Force bool   `json:"force,omitempty"`
	// File is the host's name of an imported archive, for messages.
	File string `json:"file,omitempty"`
	All  bool   `json:"all,omitempty"`
	// Pull options that cross the wire.
	Platform  string   `json:"platform,omitempty"`
	Insecure  []string `json:"insecure,omitempty"`
	UserAgent string   `json:"userAgent,omitempty"`
	// Proxy is the host's proxy settings, for the guest's registry
	// connections.
	Proxy *proxyConfig `json:"proxy,omitempty"`
	// Run is the container to run; Stdin says the host sends stdin.
	Run   *engine.RunOptions `json:"run,omitempty"`
	Stdin bool               `json:"stdin,omitempty"`
}

// result is a call's outcome, the payload of the last request.
type result struct {
	Error      string              `json:"error,omitempty"`
	Image      *images.Image       `json:"image,omitempty"`
	Images     []*images.Image     `json:"images,omitempty"`
	Removal    *images.Removal     `json:"removal,omitempty"`
	Container  *engine.Container   `json:"container,omitempty"`
	Containers []*engine.Container `json:"containers,omitempty"`
	Exit       *engine.Exit        `json:"exit,omitempty"`
}

// proxyConfig is the host's HTTP_PROXY, HTTPS_PROXY and NO_PROXY.
type proxyConfig struct {
	HTTPProxy  string `json:"httpProxy,omitempty"`
	HTTPSProxy string `json:"httpsProxy,omitempty"`
	NoProxy    string `json:"noProxy,omitempty"`
}

// dialRequest is the extra data of a DialChannel.
type dialRequest struct {
	Network string `json:"network"`
	Address string `json:"address"`
}

// windowChange is the payload of an SSH window-change request (RFC 4254
// 6.7).
type windowChange struct {
	Cols, Rows, Width, Height uint32
}

// signalRequest is the payload of an SSH signal request (RFC 4254 6.9).
type signalRequest struct {
	Name string
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // only types of this package, which always marshal
	}
	return b
}
