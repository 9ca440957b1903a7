//! deploy/compose/: both compose files parse, build the images this
//! repository defines, and give the agent a configuration `check-config`
//! accepts, listening on the port the image EXPOSEs.

use serde_json::Value;

fn services(rel: &str) -> serde_json::Map<String, Value> {
    super::yaml_file(rel)["services"]
        .as_object()
        .expect("services")
        .clone()
}

/// Images are tagged (not `latest`); builds point at an existing Dockerfile
/// with the repository root as context.
fn check_images(rel: &str, services: &serde_json::Map<String, Value>) {
    let dir = super::repo().join(rel).parent().unwrap().to_path_buf();
    for (name, s) in services {
        let image = s["image"]
            .as_str()
            .unwrap_or_else(|| panic!("{rel}: {name} has no image"));
        let tag = image.rsplit(':').next().unwrap().trim_end_matches('}');
        assert!(
            image.contains(':') && tag != "latest",
            "{rel}: {name}: image {image} needs a version tag"
        );
        if let Some(build) = s.get("build") {
            let context = dir
                .join(build["context"].as_str().unwrap())
                .canonicalize()
                .unwrap();
            assert_eq!(
                context,
                super::repo().canonicalize().unwrap(),
                "{rel}: {name}: build context"
            );
            let dockerfile = context.join(build["dockerfile"].as_str().unwrap());
            assert!(
                dockerfile.exists(),
                "{rel}: {name}: {} missing",
                dockerfile.display()
            );
        }
    }
}

/// The agent's configuration file mounted into `service`, checked; its API
/// port must be published by `publisher` (the service whose network it uses).
fn check_agent_config(rel: &str, service: &Value, publisher: &Value) -> u16 {
    let dir = super::repo().join(rel).parent().unwrap().to_path_buf();
    let mount = service["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str())
        .find(|v| v.contains(":/etc/continuity-agent/agent.toml"))
        .unwrap_or_else(|| panic!("{rel}: the agent's configuration is not mounted"));
    let file = dir.join(mount.split(':').next().unwrap());
    let toml = std::fs::read_to_string(&file).unwrap();
    let port = super::config_check::check(&file.display().to_string(), &toml, &[]);
    assert_eq!(
        port,
        super::exposed_port(),
        "{rel}: agent.listen vs the image's EXPOSE"
    );
    let ports = publisher["ports"].as_array().unwrap();
    assert!(
        ports
            .iter()
            .any(|p| p.as_str().unwrap().ends_with(&format!(":{port}"))),
        "{rel}: the API port is not published"
    );
    port
}

#[test]
fn replicas_compose_runs_two_agents_on_one_postgres() {
    let rel = "deploy/compose/docker-compose.yml";
    let s = services(rel);
    check_images(rel, &s);
    for replica in ["replica-a", "replica-b"] {
        check_agent_config(rel, &s[replica], &s[replica]);
        assert_eq!(s[replica]["read_only"], true);
    }
    let toml: toml::Table = super::read("deploy/compose/agent.toml").parse().unwrap();
    assert!(
        toml["store"]["url"]
            .as_str()
            .unwrap()
            .starts_with("postgres://continuity@postgres/")
    );
}

#[test]
fn demo_compose_wires_agent_simulator_and_sipp_trunk() {
    let rel = "deploy/compose/demo/docker-compose.yml";
    let s = services(rel);
    check_images(rel, &s);
    // The agent shares the simulator's network namespace: Talkdesk over plain
    // http is only accepted on localhost.
    assert_eq!(s["agent"]["network_mode"], "service:talkdesk");
    check_agent_config(rel, &s["agent"], &s["talkdesk"]);
    let toml: toml::Table = super::read("deploy/compose/demo/agent.toml")
        .parse()
        .unwrap();
    // The agent reaches the simulator on localhost and the trunk by its service name.
    let sim: Vec<&str> = s["talkdesk"]["command"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert_eq!(sim[0], "simulate-talkdesk");
    let listen = sim[sim.iter().position(|a| *a == "--listen").unwrap() + 1];
    let sim_port = listen.rsplit_once(':').unwrap().1;
    assert_eq!(
        toml["talkdesk"]["api_base"].as_str().unwrap(),
        format!("http://127.0.0.1:{sim_port}")
    );
    assert_eq!(
        s["talkdesk"]["image"], s["agent"]["image"],
        "the simulator is the agent's own binary"
    );
    let target = toml["probes"][0]["target"].as_str().unwrap();
    assert_eq!(
        target, "sip:trunk:5060;transport=udp",
        "the trunk service answers on 5060/udp"
    );
    assert!(
        s["trunk"]["build"]["dockerfile"]
            .as_str()
            .unwrap()
            .ends_with("sipp-trunk.Dockerfile")
    );
}
