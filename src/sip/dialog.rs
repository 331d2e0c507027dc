//! Dialog state of a UAS INVITE dialog (RFC 3261 §12): Call-ID, local and remote tags, the
//! local and remote URIs as written, the remote target, the route set and both CSeq spaces; and
//! building in-dialog requests (§12.2.1.1) from it.
//!
//! selfprov is only ever the UAS of a dialog (phones call the IVR), so only the UAS side of
//! §12.1.1 is implemented. The route set is the INVITE's Record-Route list *in order* (§12.1.1;
//! it is the UAC that reverses it, §12.1.2).

use bytes::Bytes;

use super::message::{Header, Headers, Method, NameAddr, Request, Uri};

/// A fresh tag: 64 random bits in hex (RFC 3261 §19.3 asks for at least 32).
pub fn new_tag() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// The dialog state of one call, from our (UAS) side.
#[derive(Debug, Clone)]
pub struct Dialog {
    pub call_id: String,
    /// Our tag (the To tag of our responses, the From tag of our requests).
    pub local_tag: String,
    /// The caller's From tag ("" for an RFC 2543 peer without one).
    pub remote_tag: String,
    /// The INVITE's To value with our tag appended: the From of our in-dialog requests.
    pub local_uri: String,
    /// The INVITE's From value as written (with its tag): the To of our in-dialog requests.
    pub remote_uri: String,
    /// The caller's Contact URI (updated by target-refresh re-INVITEs, §12.2.2).
    pub remote_target: Uri,
    /// Record-Route of the INVITE, top first.
    pub route_set: Vec<NameAddr>,
    /// The last CSeq number the caller used in this dialog.
    pub remote_cseq: u32,
    /// The last CSeq number we used (0: none yet).
    pub local_cseq: u32,
}

/// Why a dialog could not be created from an INVITE (answered 400).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DialogError(pub String);

impl Dialog {
    /// The dialog a 2xx to `invite` creates (§12.1.1). `invite` must have passed `validate()`.
    pub fn new_uas(invite: &Request, local_tag: String) -> Result<Dialog, DialogError> {
        let call_id = invite
            .call_id()
            .map_err(|e| DialogError(e.to_string()))?
            .to_owned();
        let from = invite.from().map_err(|e| DialogError(e.to_string()))?;
        let remote_tag = from.tag().unwrap_or_default().to_owned();
        let remote_cseq = invite.cseq().map_err(|e| DialogError(e.to_string()))?.seq;
        let contacts = invite
            .contacts()
            .map_err(|e| DialogError(format!("bad Contact header: {e}")))?;
        let remote_target = contacts
            .into_iter()
            .next()
            .map(|c| c.uri)
            .ok_or_else(|| DialogError("missing Contact header".into()))?;
        let route_set = invite
            .record_routes()
            .map_err(|e| DialogError(format!("bad Record-Route header: {e}")))?;
        let to_raw = invite.headers.get("To").unwrap_or_default().trim();
        let from_raw = invite.headers.get("From").unwrap_or_default().trim();
        Ok(Dialog {
            call_id,
            local_uri: format!("{to_raw};tag={local_tag}"),
            local_tag,
            remote_tag,
            remote_uri: from_raw.to_owned(),
            remote_target,
            route_set,
            remote_cseq,
            local_cseq: 0,
        })
    }

    /// §12.2.2: an in-dialog request with a CSeq lower than the last one is out of order (500).
    /// Returns false for such a request; otherwise records its number.
    pub fn accept_remote_cseq(&mut self, seq: u32) -> bool {
        if seq < self.remote_cseq {
            return false;
        }
        self.remote_cseq = seq;
        true
    }

    /// A target refresh (re-INVITE) with a Contact replaces the remote target.
    pub fn refresh_target(&mut self, req: &Request) {
        if let Some(c) = req.contacts().ok().and_then(|c| c.into_iter().next()) {
            self.remote_target = c.uri;
        }
    }

    /// Builds an in-dialog request (§12.2.1.1) with the next local CSeq. `via` is the full Via
    /// value (with a fresh branch); `user_agent` goes in User-Agent.
    pub fn build_request(&mut self, method: Method, via: &str, user_agent: &str) -> Request {
        self.local_cseq = self.local_cseq.wrapping_add(1).max(1);
        let mut headers = Headers::default();
        let h = |name: &str, value: String| Header {
            name: name.to_owned(),
            value,
        };
        headers.0.push(h("Via", via.to_owned()));
        headers.0.push(h("Max-Forwards", "70".into()));
        headers.0.push(h("From", self.local_uri.clone()));
        headers.0.push(h("To", self.remote_uri.clone()));
        headers.0.push(h("Call-ID", self.call_id.clone()));
        headers.0.push(h(
            "CSeq",
            format!("{} {}", self.local_cseq, method.as_str()),
        ));
        let uri = super::route::apply(&self.route_set, &self.remote_target, &mut headers);
        if !user_agent.is_empty() {
            headers.0.push(h("User-Agent", user_agent.to_owned()));
        }
        Request {
            method,
            uri,
            headers,
            body: Bytes::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::message::{parse, Message};

    fn invite(extra: &str) -> Request {
        let s = format!(
            "INVITE sip:7000@203.0.113.10 SIP/2.0\r\n\
             Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKabc\r\n\
             Max-Forwards: 70\r\n\
             From: \"Desk\" <sip:phone@192.0.2.1>;tag=ft1\r\n\
             To: <sip:7000@203.0.113.10>\r\n\
             Call-ID: cid-1@192.0.2.1\r\n\
             CSeq: 10 INVITE\r\n\
             Contact: <sip:phone@192.0.2.1:5062>\r\n\
             {extra}\
             Content-Length: 0\r\n\r\n"
        );
        match parse(s.as_bytes()).unwrap() {
            Message::Request(r) => r,
            _ => panic!("not a request"),
        }
    }

    #[test]
    fn uas_dialog_from_invite_and_bye() {
        let inv = invite("");
        let mut d = Dialog::new_uas(&inv, "lt1".into()).unwrap();
        assert_eq!(d.call_id, "cid-1@192.0.2.1");
        assert_eq!(d.remote_tag, "ft1");
        assert_eq!(d.remote_cseq, 10);
        assert!(d.local_uri.ends_with(";tag=lt1"));
        let bye = d.build_request(
            Method::Bye,
            "SIP/2.0/UDP 203.0.113.10:5060;branch=z9hG4bKb",
            "ua",
        );
        assert_eq!(bye.uri.to_string(), "sip:phone@192.0.2.1:5062");
        assert_eq!(bye.cseq().unwrap().seq, 1);
        assert_eq!(bye.cseq().unwrap().method, Method::Bye);
        assert_eq!(bye.from().unwrap().tag(), Some("lt1"));
        assert_eq!(bye.to().unwrap().tag(), Some("ft1"));
        assert_eq!(bye.headers.get("Route"), None);
        let bye2 = d.build_request(Method::Bye, "SIP/2.0/UDP h;branch=z9hG4bKc", "ua");
        assert_eq!(bye2.cseq().unwrap().seq, 2);
    }

    #[test]
    fn route_set_in_order_for_uas() {
        let inv = invite(
            "Record-Route: <sip:p1.example.com;lr>, <sip:p2.example.com;lr>\r\n\
             Record-Route: <sip:p3.example.com;lr>\r\n",
        );
        let mut d = Dialog::new_uas(&inv, "lt".into()).unwrap();
        let bye = d.build_request(Method::Bye, "SIP/2.0/UDP h;branch=z9hG4bKd", "");
        let routes: Vec<&str> = bye.headers.get_all("Route").collect();
        assert_eq!(routes.len(), 3);
        assert!(routes[0].contains("p1.example.com"));
        assert!(routes[2].contains("p3.example.com"));
        assert_eq!(bye.uri.to_string(), "sip:phone@192.0.2.1:5062");
    }

    #[test]
    fn strict_route_puts_target_last() {
        let inv = invite("Record-Route: <sip:strict.example.com>\r\n");
        let mut d = Dialog::new_uas(&inv, "lt".into()).unwrap();
        let bye = d.build_request(Method::Bye, "SIP/2.0/UDP h;branch=z9hG4bKe", "");
        assert_eq!(bye.uri.to_string(), "sip:strict.example.com");
        let routes: Vec<&str> = bye.headers.get_all("Route").collect();
        assert_eq!(routes.len(), 1);
        assert!(routes[0].contains("phone@192.0.2.1:5062"));
    }

    #[test]
    fn cseq_ordering() {
        let mut d = Dialog::new_uas(&invite(""), "lt".into()).unwrap();
        assert!(!d.accept_remote_cseq(9));
        assert!(d.accept_remote_cseq(10));
        assert!(d.accept_remote_cseq(11));
        assert!(!d.accept_remote_cseq(10));
    }

    #[test]
    fn missing_contact_is_an_error() {
        let s = "INVITE sip:7000@h SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKa\r\n\
                 From: <sip:a@h>;tag=1\r\nTo: <sip:7000@h>\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n\
                 Content-Length: 0\r\n\r\n";
        let Ok(Message::Request(r)) = parse(s.as_bytes()) else {
            panic!()
        };
        assert!(Dialog::new_uas(&r, "t".into()).is_err());
    }

    #[test]
    fn tags_are_random_and_long_enough() {
        let a = new_tag();
        let b = new_tag();
        assert_ne!(a, b);
        assert!(a.len() >= 8);
    }
}
