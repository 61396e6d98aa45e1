use std::process::ExitCode;

use clap::Parser;
use f2b_route::cli::Cli;
use f2b_route::error::Chain;
use f2b_route::exit::Exit;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if e.use_stderr() => {
            // clap's usage errors span several lines; ours are one.
            let text = e.render().to_string();
            let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
            let mut first = lines
                .next()
                .unwrap_or("bad command line")
                .trim_start_matches("error: ")
                .to_string();
            // "the following required arguments were not provided:" names
            // them on the next line.
            if first.ends_with(':') {
                if let Some(next) = lines.next() {
                    first.push(' ');
                    first.push_str(next);
                }
            }
            eprintln!("f2b-route: {first} (see f2b-route --help)");
            return Exit::Usage.into();
        }
        Err(e) => {
            // --help and --version.
            let _ = e.print();
            return Exit::Ok.into();
        }
    };
    match f2b_route::commands::run(cli) {
        Ok(()) => Exit::Ok.into(),
        Err(err) => {
            eprintln!("f2b-route: {:#}", Chain(&err));
            err.exit().into()
        }
    }
}
