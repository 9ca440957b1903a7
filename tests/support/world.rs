//! The peers most agent tests start from: the Talkdesk simulator over real
//! HTTP, one SIP trunk (the in-process responder, answering OPTIONS with
//! 200) and a temporary directory for the store, the configuration and the
//! logs. A test takes the parts it needs apart (`let Peers { sim, .. }`).

use continuity_agent::probe::sip::responder::{Mode, Responder};
use continuity_agent::talkdesk::simulator::{self, SimServer, Simulator};

pub struct Peers {
    /// The simulator's state and fault injection.
    pub sim: Simulator,
    /// Its HTTP server (stops when dropped).
    pub server: SimServer,
    /// The trunk the tests' `trunk-a` probe pings over UDP.
    pub trunk: Responder,
    pub dir: tempfile::TempDir,
}

impl Peers {
    pub async fn start() -> Peers {
        let sim = Simulator::default();
        let server = simulator::spawn(sim.clone(), "127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let trunk = Responder::bind("127.0.0.1:0".parse().unwrap(), Mode::Answer(200))
            .await
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        Peers {
            sim,
            server,
            trunk,
            dir,
        }
    }
}
