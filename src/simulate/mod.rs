//! placeholder until the simulator lands
#[derive(clap::Args)]
pub struct SimulateArgs {}
pub fn run(_args: SimulateArgs) -> anyhow::Result<()> {
    anyhow::bail!("not yet")
}
