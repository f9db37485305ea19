# devbox: `make` builds bin/devbox; `make test` runs every test; `make bench`
# runs the benchmarks against their peers; `make lint` vets and checks format.
GO      ?= go
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)
CRANE_VERSION := v0.22.1

.PHONY: all build deps test lint fuzz bench demo clean

all: build

# Static (no cgo): the same binary runs as a container's --init.
build:
	CGO_ENABLED=0 $(GO) build -ldflags "$(LDFLAGS)" -o bin/devbox ./cmd/devbox

# deps installs what the tests and benchmarks need on Debian 12.
deps:
	bash scripts/deps.sh

bin/crane:
	GOBIN=$(CURDIR)/bin $(GO) install github.com/google/go-containerregistry/cmd/crane@$(CRANE_VERSION)

test: build image
	DEVBOX_BIN=$(CURDIR)/bin/devbox $(GO) test -count=1 -timeout 20m ./...

lint:
	$(GO) vet ./...
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

# fuzz runs the layer unpacker's fuzzer for a while (FUZZTIME=5m for longer).
FUZZTIME ?= 60s
fuzz:
	$(GO) test -run '^$$' -fuzz FuzzApply -fuzztime $(FUZZTIME) -fuzzminimizetime 5s ./images/unpack/

# bench installs the peers (crun, runc, podman) first; bench/run needs root;
# bench/vm boots the guest image under QEMU; bench/vmengine runs containers
# through it.
bench:
	BENCH=1 bash scripts/deps.sh
	$(MAKE) build bin/crane image
	$(GO) run ./bench/pull -devbox bin/devbox -crane bin/crane
	$(GO) run ./bench/run -devbox bin/devbox
	$(GO) run ./bench/vm -devbox bin/devbox -guest-image bin/guest/$(ARCH)
	$(GO) run ./bench/vmengine -devbox bin/devbox -guest-image bin/guest/$(ARCH)

# demo runs devbox's main job end to end on a local image: a busybox image
# built here, served by a local registry, pulled and unpacked by devbox.
demo: build bin/crane
	bash scripts/demo.sh

# image builds the guest VM image (kernel, initramfs, guest.json) into
# bin/guest/$(ARCH)/, where a devbox in bin/ finds it:
# make image [ARCH=amd64|arm64] [KERNEL=devbox|debian]. The kernel build and
# the Debian packages the image takes mke2fs and busybox from are cached in
# $(GUEST_CACHE). The agent is stripped (-s -w): a third smaller initramfs
# that the kernel unpacks faster, and Go's stack traces keep their names.
ifeq ($(origin ARCH),undefined)
ARCH := $(shell $(GO) env GOARCH)
endif
KERNEL      ?= devbox
GUEST_CACHE ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/devbox
.PHONY: image
image:
	CGO_ENABLED=0 GOOS=linux GOARCH=$(ARCH) $(GO) build -ldflags "-s -w $(LDFLAGS)" -o bin/devbox-linux-$(ARCH) ./cmd/devbox
	bash scripts/guest-kernel.sh $(ARCH) $(KERNEL) bin/guest-build/$(ARCH)-$(KERNEL)
	bash scripts/guest-debs.sh $(ARCH) $(GUEST_CACHE)/debs/$(ARCH)/root
	$(GO) run ./images/guest/mkguest -arch $(ARCH) -kernel-source $(KERNEL) \
		-kernel-dir bin/guest-build/$(ARCH)-$(KERNEL) -agent bin/devbox-linux-$(ARCH) \
		-debroot $(GUEST_CACHE)/debs/$(ARCH)/root -out bin/guest/$(ARCH)

clean:
	rm -rf bin
