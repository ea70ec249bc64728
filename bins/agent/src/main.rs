//! `cap-agent`: runs this machine's game servers for a Ctrl-Alt-Play panel.

fn main() -> anyhow::Result<()> {
    cap_agent::main_with_args(std::env::args_os())
}
