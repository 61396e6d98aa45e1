use std::process::ExitCode;

use clap::Parser;
use f2b_route::cli::Cli;
use f2b_route::error::exit_of;
use f2b_route::exit::Exit;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                Exit::Usage
            } else {
                Exit::Ok
            }
            .into();
        }
    };
    match f2b_route::commands::run(cli) {
        Ok(()) => Exit::Ok.into(),
        Err(err) => {
            eprintln!("f2b-route: {err:#}");
            exit_of(&err).into()
        }
    }
}
