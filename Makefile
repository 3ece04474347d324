# Petrel: top-level build. `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := build

# Reproducible builds: fixed time, no absolute paths in binaries.
export SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null || echo 1)
export TZ := UTC
export LC_ALL := C
export CARGO_TERM_COLOR ?= never
# Cargo passes workspace sources to rustc as relative paths, so binaries carry no
# checkout path. Do not set RUSTFLAGS here: it would replace (not join) the rustflags of
# each workspace's .cargo/config.toml, where the guests' linker script lives.
HOST_TARGET := x86_64-unknown-linux-musl
GUEST_TARGET := x86_64-unknown-none
GUEST_OUT := $(CURDIR)/target/guests
STAGE := $(CURDIR)/scripts/stage

.PHONY: help deps build tender guests image demo test fmt fmt-check clippy unit qemu repro bench clean

help:
	@echo "make deps    install what a fresh machine lacks (rustup targets, Debian packages)"
	@echo "make demo    build everything, boot the appliance in QEMU with a web unikernel (console here)"
	@echo "make build   the static binaries, every example unikernel and the image"
	@echo "make test    deps, build, fmt check, clippy -D warnings, all tests, QEMU boots (timed stages)"
	@echo "make image   the firmware in build/image: petrel.img, petrel.efi, initramfs (IMAGE_VERSION=...)"
	@echo "make repro   two clean builds of the image in different directories, compared byte for byte"
	@echo "make bench   benchmarks (set HVT_BASELINE=/path/to/solo5-hvt for side-by-side ratios)"

deps:
	@$(STAGE) deps scripts/deps

build: tender guests image

tender:
	cargo build --release --locked --bins

guests:
	cd guest && cargo build --release --locked
	@mkdir -p $(GUEST_OUT)
	@for f in guest/target/$(GUEST_TARGET)/release/*; do \
	  [ -f "$$f" ] && [ -x "$$f" ] || continue; \
	  cp "$$f" "$(GUEST_OUT)/$$(basename "$$f").hvt"; \
	done
	@echo "guests in $(GUEST_OUT): $$(ls $(GUEST_OUT) | tr '\n' ' ')"

# The firmware: the static musl binaries, then petrel-image (kernel and systemd's stub
# from the Debian packages pinned in image/inputs.lock, downloaded into build/inputs/ and
# verified by sha256). Relative paths only: nothing of this checkout's location is recorded.
IMAGE_VERSION ?=
image: tender
	target/$(HOST_TARGET)/release/petrel-image build --out build/image $(if $(IMAGE_VERSION),--version $(IMAGE_VERSION))

fmt:
	cargo fmt --all
	cd guest && cargo fmt --all

fmt-check:
	cargo fmt --all -- --check
	cd guest && cargo fmt --all -- --check

clippy:
	cargo clippy --locked --all-targets -- -D warnings
	cd guest && cargo clippy --locked --release -- -D warnings

unit:
	PETREL_GUESTS=$(GUEST_OUT) PETREL_TENDER=$(CURDIR)/target/$(HOST_TARGET)/release/petrel-hvt \
	  cargo test --profile test-opt --locked --workspace --exclude petrel-qemu-test
	cd guest && cargo test --locked -p petrel-guest -p petrel-net-example --target x86_64-unknown-linux-gnu

test:
	@$(STAGE) deps scripts/deps
	@$(STAGE) build $(MAKE) --no-print-directory build
	@$(STAGE) fmt-check $(MAKE) --no-print-directory fmt-check
	@$(STAGE) clippy $(MAKE) --no-print-directory clippy
	@$(STAGE) tests $(MAKE) --no-print-directory unit
	@$(STAGE) qemu $(MAKE) --no-print-directory qemu

# The real image in QEMU (TCG here), one VM at a time.
qemu:
	cargo test --release --locked -p petrel-qemu-test -- --test-threads=1

# Two full builds from clean clones in different directories must give identical bytes.
repro:
	scripts/repro

# Boots a provisioned copy of the image with the smoltcp HTTP unikernel autostarted,
# the serial console on this terminal (Ctrl-A X quits); prints what to curl and how to
# run petrelctl once the page answers.
demo: deps build
	scripts/demo build/image/petrel.img

bench: build
	PETREL_GUESTS=$(GUEST_OUT) cargo run --release --locked -p petrel-hvt --example bench
	PETREL_GUESTS=$(GUEST_OUT) cargo run --release --locked -p petreld --example bench
	cargo run --release --locked -p petrel-qemu-test --example bootbench

clean:
	cargo clean
	cd guest && cargo clean
