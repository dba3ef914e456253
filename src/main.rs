//! The `pipewarden` command line: parse arguments, load the configuration,
//! call into the library, map the result to an exit code.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use pipewarden::config::{Config, LogConfig, LogFormat};

/// Exit status for configuration problems (as `check-config` documents).
const EXIT_CONFIG: u8 = 2;

#[derive(Parser)]
#[command(name = "pipewarden", version, about = "Observability and governance sidecar for agent pipelines on Kafka")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon: watch the topics, serve /metrics, /healthz and /readyz.
    Run {
        /// Configuration file.
        #[arg(long, short, default_value = "config.toml", env = "PIPEWARDEN_CONFIG")]
        config: PathBuf,
    },
    /// Validate a configuration file: exit 0, or list every problem and exit 2.
    CheckConfig {
        #[arg(long, short, default_value = "config.toml", env = "PIPEWARDEN_CONFIG")]
        config: PathBuf,
    },
    /// Run simulated agent pipelines (support triage, document processing) against Kafka.
    Simulate(Box<pipewarden::simulate::SimulateArgs>),
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

fn load(path: &Path) -> Result<Config, ExitCode> {
    Config::load(path, &env).map_err(|errors| {
        eprint!("{}: {errors}", path.display());
        ExitCode::from(EXIT_CONFIG)
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::CheckConfig { config } => match load(&config) {
            Ok(_) => {
                println!("{}: ok", config.display());
                ExitCode::SUCCESS
            }
            Err(code) => code,
        },
        Command::Run { config } => {
            let config = match load(&config) {
                Ok(config) => config,
                Err(code) => return code,
            };
            pipewarden::telemetry::init_logging(&config.log);
            match pipewarden::app::run(config) {
                Ok(()) => ExitCode::SUCCESS,
                Err(err) => {
                    tracing::error!(error = format!("{err:#}"), "pipewarden failed");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Simulate(args) => {
            pipewarden::telemetry::init_logging(&LogConfig { level: "info".into(), format: LogFormat::Text });
            match pipewarden::simulate::run(*args) {
                Ok(()) => ExitCode::SUCCESS,
                Err(err) => {
                    tracing::error!(error = format!("{err:#}"), "simulate failed");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
