//! `render`: print a config for the other daemons, filled in from ours.

use std::io::Write;

use super::Ctx;
use crate::cli::RenderArgs;
use crate::error::{Error, Result};
use crate::render::{render, RenderOptions};

pub fn run(ctx: &Ctx, args: &RenderArgs) -> Result<()> {
    let options = RenderOptions {
        local_as: args.local_as,
        peers: args.peers.clone(),
        peer_as: args.peer_as,
        router_id: args.router_id,
        interface: args.interface.clone(),
        no_pftable: args.no_pftable,
        discard: args.discard.clone(),
    };
    let text = render(args.target, &ctx.config, &options)?;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other.map_err(Error::Output),
    }
}
