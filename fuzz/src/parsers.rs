//! The control-plane targets: the socket protocol (framing, decoding, and the controller
//! answering what was decoded), the ipvsadm and iptables command-line parsers, and the
//! configuration-file parser. Every accepted input is also applied to a controller over a
//! backend that publishes nothing, so the configuration model sees fuzzed commands too.

use std::io::Cursor;

use control::config_file;
use control::error::CtlError;
use control::iptables::{parse_iptables, parse_mark};
use control::model::{Config, ServerId};
use control::names::NumericOnly;
use control::proto::{self, ConnInfo, LinkInfo, NeighInfo, Op, Request, ServerStats};
use control::server::{Backend, Controller, Session};

/// A backend with two ports that accepts every publication and has no dataplane.
struct NullBackend;

impl Backend for NullBackend {
    fn port_names(&self) -> Vec<String> {
        vec!["dpdk0".into(), "dpdk1".into()]
    }
    fn publish(&mut self, _cfg: &Config) -> Result<(), CtlError> {
        Ok(())
    }
    fn server_stats(&mut self) -> Vec<(ServerId, ServerStats)> {
        Vec::new()
    }
    fn connections(&mut self) -> Vec<ConnInfo> {
        Vec::new()
    }
    fn neighbours(&mut self) -> Vec<NeighInfo> {
        Vec::new()
    }
    fn links(&mut self) -> Vec<LinkInfo> {
        Vec::new()
    }
    fn table_size(&self) -> u32 {
        4096
    }
}

fn controller() -> Controller<NullBackend> {
    Controller::new(NullBackend, 256)
}

/// Handles `req` and checks that the response survives encoding.
fn handle(ctl: &mut Controller<NullBackend>, session: &mut Session, req: Request) {
    let resp = ctl.handle_in(session, req);
    let wire = proto::encode_response(&resp);
    let back = proto::decode_response(&wire).unwrap_or_else(|e| panic!("a response the server sent does not decode: {e}"));
    assert_eq!(back, resp, "response changed through encoding");
}

/// The socket protocol: `data` is what a client wrote on its connection (length-prefixed
/// frames); every frame the server would read is decoded and, if valid, handled.
pub fn proto(data: &[u8]) {
    let mut ctl = controller();
    let mut session = Session::default();
    let mut r = Cursor::new(data);
    for _ in 0..64 {
        let Ok(body) = proto::read_frame(&mut r, proto::MAX_REQUEST) else { break };
        match proto::decode_request(&body) {
            Ok(req) => {
                let again = proto::decode_request(&proto::encode_request(&req)).expect("a decoded request re-encodes");
                assert_eq!(again, req, "request changed through encoding");
                handle(&mut ctl, &mut session, req);
            }
            Err(e) => assert!(!e.message.is_empty(), "an empty error message"),
        }
    }
}

/// Command-line words of an input: NUL-separated if it has a NUL, else blank-separated.
fn words(data: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(data);
    if text.contains('\0') {
        text.split('\0').map(str::to_string).collect()
    } else {
        text.split_whitespace().map(str::to_string).collect()
    }
}

/// ipvsadm: the arguments of one command line (and, read as a `-R` file, each line); an
/// accepted command is sent to a controller.
pub fn ipvsadm(data: &[u8]) {
    let mut ctl = controller();
    let mut session = Session::default();
    let mut one = |args: &[String]| match control::ipvsadm::parse(args) {
        Ok(cmd) => handle(&mut ctl, &mut session, Request::new(Op::Ipvs(cmd))),
        Err(e) => assert!(!e.message.is_empty(), "an empty error message for {args:?}"),
    };
    one(&words(data));
    let text = String::from_utf8_lossy(data);
    for line in text.lines().take(32) {
        one(&control::ipvsadm::restore_words(line));
    }
}

/// `lbadm iptables …` and `lbadm mark …` command lines.
pub fn iptables(data: &[u8]) {
    let args = words(data);
    if let Err(e) = parse_iptables(&args, &NumericOnly) {
        assert!(!e.message.is_empty(), "an empty error message");
    }
    if let Err(e) = parse_mark(&args, &NumericOnly) {
        assert!(!e.message.is_empty(), "an empty error message");
    }
}

/// A configuration file (`director --config`, `lbadm restore`): parsed; an error names a
/// line of the file; applied to a controller as one transaction, an error changes nothing.
pub fn config_file(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let lines = text.lines().count();
    match config_file::parse(&text, &NumericOnly) {
        Ok(located) => assert!(located.iter().all(|l| l.line >= 1 && l.line <= lines), "a command from outside the file"),
        Err(e) => assert!(e.line >= 1 && e.line <= lines.max(1), "error on line {} of {lines}", e.line),
    }
    let mut ctl = controller();
    let before = ctl.dump();
    match config_file::apply_text(&mut ctl, &text, &NumericOnly) {
        Ok(_) => {}
        Err(e) => {
            assert!(e.line <= lines.max(1), "error on line {} of {lines}", e.line);
            assert_eq!(ctl.dump(), before, "a failed load changed the configuration");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepted_inputs_reach_the_controller() {
        let mut ctl = controller();
        let mut s = Session::default();
        handle(&mut ctl, &mut s, Request::new(Op::Ipvs(control::ipvsadm::parse(&words(b"-A -t 10.0.0.1:80 -s rr")).unwrap())));
        assert_eq!(ctl.config().services_in_creation_order().len(), 1);
        config_file(b"-A -t 10.0.0.1:80 -s rr\n-a -t 10.0.0.1:80 -r 10.0.0.11 -g\n-a -t 10.0.0.9:1 -r x\n");
        ipvsadm(b"-A\0-t\x0010.0.0.1:80\0-s\0wlc");
        iptables(b"-t mangle -A PREROUTING -d 10.0.0.1 -p tcp --dport 80 -j MARK --set-mark 1");
        let mut framed = Vec::new();
        let body = proto::encode_request(&Request::new(Op::SysctlShow));
        proto::write_frame(&mut framed, &body).unwrap();
        proto(&framed);
    }
}
