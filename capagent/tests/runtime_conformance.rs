//! The runtime conformance suite (`capagent::runtime::conformance`) on the process runtime and
//! on the Docker runtime. The Docker engine is `CAP_TEST_DOCKER_HOST` (`.ci/run` starts one).

mod support;

use capagent::runtime::GameRuntime;
use capagent::runtime::conformance::RuntimeHarness;
use capagent::{ConsoleConfig, ProcessRuntime, ProcessRuntimeConfig};
use capcore::backend::RuntimeSpec;
use capcore::ids::ServerId;
use capcore::template::StopAction;
use std::path::PathBuf;
use std::sync::Arc;

/// Host processes under this test process's temporary directory.
struct Process {
    config: ProcessRuntimeConfig,
}

#[async_trait::async_trait]
impl RuntimeHarness for Process {
    async fn runtime(&self, console: ConsoleConfig) -> Arc<dyn GameRuntime> {
        Arc::new(ProcessRuntime::new(ProcessRuntimeConfig { console, ..self.config.clone() }))
    }
    fn game(&self, args: &[&str], stop: StopAction) -> RuntimeSpec {
        support::spec(args, stop)
    }
    fn server_dir(&self, id: ServerId) -> PathBuf {
        self.config.servers_dir.join(id.to_string())
    }
}

async fn process() -> Option<Arc<dyn RuntimeHarness>> {
    Some(Arc::new(Process { config: support::config("conformance") }))
}

mod process_runtime {
    use super::*;
    capagent::runtime_conformance_tests!(process, "process");
}

#[cfg(feature = "docker")]
mod docker_runtime {
    use super::*;
    use capagent::runtime::docker::{DockerRuntime, DockerRuntimeConfig};

    /// Containers of the test image on the test engine, with servers under this test process's
    /// temporary directory.
    struct Docker {
        config: DockerRuntimeConfig,
        image: String,
    }

    #[async_trait::async_trait]
    impl RuntimeHarness for Docker {
        async fn runtime(&self, console: ConsoleConfig) -> Arc<dyn GameRuntime> {
            let config = DockerRuntimeConfig { console, ..self.config.clone() };
            Arc::new(DockerRuntime::connect(config).await.expect("the test engine"))
        }
        fn game(&self, args: &[&str], stop: StopAction) -> RuntimeSpec {
            let mut spec = support::spec(args, stop);
            spec.argv[0] = support::docker::GAME.into();
            spec.image = Some(self.image.clone());
            spec
        }
        fn server_dir(&self, id: ServerId) -> PathBuf {
            self.config.servers_dir.join(id.to_string())
        }
    }

    async fn docker() -> Option<Arc<dyn RuntimeHarness>> {
        let host = support::docker::host()?;
        let base = std::env::temp_dir().join(format!("capagent-docker-{}", std::process::id()));
        let mut config = DockerRuntimeConfig::new(base.join("servers"), base.join("state"));
        config.host = Some(host.clone());
        let image = support::docker::image(&host, std::path::Path::new(&support::game())).await;
        Some(Arc::new(Docker { config, image }))
    }

    capagent::runtime_conformance_tests!(docker, "docker");
}
