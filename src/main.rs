use anyhow::Context as _;
use clap::Parser;

use anteroom::config::{Cli, Command, Settings};
use anteroom::startup::{cancel_on_signal, Application};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let settings = Settings::load(&cli).context("loading configuration")?;
    anteroom::telemetry::init(settings.log_format);
    match cli.command.unwrap_or(Command::Serve) {
        Command::PrintConfig => {
            print!("{}", settings.to_toml()?);
            Ok(())
        }
        Command::Migrate => anteroom::startup::migrate(&settings).await,
        Command::SeedDemo => anteroom::startup::seed_demo_command(&settings).await,
        Command::Serve => {
            let app = Application::build(settings).await?;
            cancel_on_signal(app.shutdown_token());
            app.run_until_stopped().await
        }
    }
}
