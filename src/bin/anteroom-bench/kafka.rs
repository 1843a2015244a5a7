//! A Kafka broker for the production backends: rdkafka's MockCluster speaks
//! the real protocol on 127.0.0.1, and the gateway process connects to it
//! like to any broker. It lives on a thread of its own (it is not `Send`)
//! until the harness exits.

use anyhow::Context as _;

#[derive(Debug)]
pub struct MockKafka {
    pub bootstrap: String,
}

impl MockKafka {
    /// Starts a one-broker cluster with the gateway's topics, named with
    /// `topic_prefix`, created (the mock has no admin API for the gateway to
    /// create them itself).
    pub fn start(topic_prefix: &str) -> anyhow::Result<Self> {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let prefix = topic_prefix.to_owned();
        std::thread::spawn(move || {
            let started = (|| {
                let cluster = rdkafka::mocking::MockCluster::new(1)?;
                for kind in anteroom::domain::EventKind::ALL {
                    cluster.create_topic(&format!("{prefix}{}", kind.topic()), 3, 1)?;
                }
                Ok::<_, rdkafka::error::KafkaError>(cluster)
            })();
            match started {
                Ok(cluster) => {
                    let _ = ready_tx.send(Ok(cluster.bootstrap_servers()));
                    loop {
                        std::thread::park();
                    }
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                }
            }
        });
        let bootstrap = ready_rx
            .recv()
            .context("the mock Kafka thread")?
            .context("start the mock Kafka cluster")?;
        Ok(Self { bootstrap })
    }
}
