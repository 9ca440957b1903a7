# syntax=docker/dockerfile:1
#
# A stand-in SIP trunk for the demo compose file: sipp answering every OPTIONS
# with 200 OK (tests/sipp/options-uas.xml, the scenario the test suite uses).
# There is no official sipp image, so this installs Debian's sip-tester.
#
#   docker build -f deploy/docker/sipp-trunk.Dockerfile -t continuity-sipp-trunk:0.1.0 .
FROM docker.io/library/debian:bookworm-slim
# bookworm is the pin: exact package versions leave the mirror at each point release.
# hadolint ignore=DL3008
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends sip-tester \
 && rm -rf /var/lib/apt/lists/*
COPY tests/sipp/options-uas.xml /etc/sipp/options-uas.xml
USER 65532:65532
EXPOSE 5060/udp
# -nostdin: no interactive keys; -t u1: one UDP socket; port 5060.
ENTRYPOINT ["sipp", "-sf", "/etc/sipp/options-uas.xml", "-p", "5060", "-t", "u1", "-nostdin"]
