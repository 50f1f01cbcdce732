//! placeholder
use anyhow::Result;
use clap::Args;
use facegate_vision::ModelsDir;
#[derive(Args)]
pub struct CalibrateArgs {}
pub fn run(_m: &ModelsDir, _a: &CalibrateArgs) -> Result<()> { Ok(()) }
