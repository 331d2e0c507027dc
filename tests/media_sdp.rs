//! SDP offer/answer against offers as real phones and test tools send them.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use selfprov::media::g711::Codec;
use selfprov::media::sdp::{
    build_answer, build_offer, negotiate, negotiate_answer, parse_remote, Direction, LocalMedia,
    SdpError,
};

fn crlf(s: &str) -> Vec<u8> {
    s.trim_start()
        .lines()
        .map(|l| format!("{}\r\n", l.trim()))
        .collect::<String>()
        .into_bytes()
}

fn local() -> LocalMedia {
    LocalMedia {
        addr: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10)),
        port: 40_000,
        session_id: 4242,
        session_version: 1,
    }
}

const YEALINK: &str = "
v=0
o=- 20033 20033 IN IP4 192.168.1.50
s=SDP data
c=IN IP4 192.168.1.50
t=0 0
m=audio 11796 RTP/AVP 0 8 18 9 101
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:18 G729/8000
a=fmtp:18 annexb=no
a=rtpmap:9 G722/8000
a=fmtp:101 0-15
a=rtpmap:101 telephone-event/8000
a=ptime:20
a=sendrecv
";

#[test]
fn yealink_offer_and_exact_answer() {
    let r = parse_remote(&crlf(YEALINK)).unwrap();
    assert_eq!(r.addr, "192.168.1.50".parse::<IpAddr>().unwrap());
    assert_eq!(r.port, 11796);
    let pts: Vec<u8> = r.formats.iter().map(|f| f.pt).collect();
    assert_eq!(pts, [0, 8, 18, 9, 101]);
    assert_eq!(r.formats[2].encoding, "G729");
    assert_eq!(r.formats[2].fmtp.as_deref(), Some("annexb=no"));
    let te = r.telephone_event.clone().unwrap();
    assert_eq!((te.pt, te.fmtp.as_deref()), (101, Some("0-15")));
    assert_eq!(r.ptime, Some(20));
    assert_eq!(r.direction, Direction::SendRecv);
    assert!(!r.on_hold);
    assert_eq!((r.session_id, r.session_version), (20033, 20033));

    let n = negotiate(&r, &[Codec::Pcmu, Codec::Pcma]).unwrap();
    assert_eq!(n.codec, Codec::Pcmu);
    assert_eq!(n.te_pt(), Some(101));
    assert_eq!(n.ptime, 20);
    assert_eq!(n.samples_per_packet(), 160);
    assert_eq!(
        n.remote_rtp,
        Some("192.168.1.50:11796".parse::<SocketAddr>().unwrap())
    );
    assert!(n.we_send());
    let answer = build_answer(&local(), &n);
    assert_eq!(
        answer,
        "v=0\r\n\
         o=selfprov 4242 1 IN IP4 192.0.2.10\r\n\
         s=selfprov\r\n\
         c=IN IP4 192.0.2.10\r\n\
         t=0 0\r\n\
         m=audio 40000 RTP/AVP 0 101\r\n\
         a=rtpmap:0 PCMU/8000\r\n\
         a=rtpmap:101 telephone-event/8000\r\n\
         a=fmtp:101 0-15\r\n\
         a=ptime:20\r\n\
         a=sendrecv\r\n"
    );
    // Our answer is itself valid SDP that parses back to the same choice.
    let back = parse_remote(answer.as_bytes()).unwrap();
    assert_eq!(back.port, 40_000);
    assert_eq!(back.formats.len(), 2);
    assert_eq!(back.formats[0].codec(), Some(Codec::Pcmu));
    assert_eq!(back.telephone_event.unwrap().pt, 101);
}

#[test]
fn unchanged_sdp_gives_identical_answer() {
    // Session refresh (re-INVITE with the same SDP): same answer, same o= line, as long as the
    // caller keeps the version.
    let n1 = negotiate(&parse_remote(&crlf(YEALINK)).unwrap(), &[]).unwrap();
    let n2 = negotiate(&parse_remote(&crlf(YEALINK)).unwrap(), &[]).unwrap();
    assert_eq!(n1, n2);
    assert_eq!(build_answer(&local(), &n1), build_answer(&local(), &n2));
    let mut l2 = local();
    l2.session_version += 1;
    assert!(build_answer(&l2, &n1).contains("o=selfprov 4242 2 IN IP4"));
}

#[test]
fn cisco_offer_with_tias_and_media_level_connection() {
    let offer = "
v=0
o=Cisco-SIPUA 26787 0 IN IP4 10.1.1.20
s=SIP Call
b=AS:4064
t=0 0
m=audio 28062 RTP/AVP 9 8 0 18 102 116 101
c=IN IP4 10.1.1.20
b=TIAS:64000
a=rtpmap:9 G722/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:0 PCMU/8000
a=rtpmap:18 G729/8000
a=fmtp:18 annexb=yes
a=rtpmap:102 L16/16000
a=rtpmap:116 iLBC/8000
a=fmtp:116 mode=20
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-15
a=sendrecv
";
    let r = parse_remote(&crlf(offer)).unwrap();
    assert_eq!(r.addr, "10.1.1.20".parse::<IpAddr>().unwrap());
    assert_eq!(r.ptime, None);
    let n = negotiate(&r, &[Codec::Pcmu, Codec::Pcma]).unwrap();
    // The offer's order wins: G.722 is not ours, PCMA comes before PCMU.
    assert_eq!(n.codec, Codec::Pcma);
    assert_eq!(n.ptime, 20, "default");
    // A configuration allowing only PCMU gets PCMU.
    assert_eq!(negotiate(&r, &[Codec::Pcmu]).unwrap().codec, Codec::Pcmu);
    let a = build_answer(&local(), &n);
    assert!(a.contains("m=audio 40000 RTP/AVP 8 101\r\n"), "{a}");
    assert!(a.contains("a=rtpmap:8 PCMA/8000\r\n"));
}

#[test]
fn media_level_connection_overrides_session_level() {
    let offer = "
v=0
o=- 1 1 IN IP4 10.0.0.1
s=-
c=IN IP4 10.0.0.1
t=0 0
m=audio 5000 RTP/AVP 0
c=IN IP4 10.0.0.99
";
    let r = parse_remote(&crlf(offer)).unwrap();
    assert_eq!(r.addr, "10.0.0.99".parse::<IpAddr>().unwrap());
    assert_eq!(r.formats[0].encoding, "PCMU", "static PT without rtpmap");
}

#[test]
fn polycom_offer_session_level_direction_and_te_127() {
    let offer = "
v=0
o=- 1619690473 1619690473 IN IP4 172.16.0.33
s=Polycom IP Phone
c=IN IP4 172.16.0.33
t=0 0
a=sendrecv
m=audio 2222 RTP/AVP 9 102 0 8 18 127
a=rtpmap:9 G722/8000
a=rtpmap:102 G7221/16000
a=fmtp:102 bitrate=32000
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:18 G729/8000
a=fmtp:18 annexb=no
a=rtpmap:127 telephone-event/8000
";
    let r = parse_remote(&crlf(offer)).unwrap();
    assert_eq!(r.direction, Direction::SendRecv);
    let n = negotiate(&r, &[]).unwrap();
    assert_eq!(n.codec, Codec::Pcmu);
    assert_eq!(n.te_pt(), Some(127));
    let a = build_answer(&local(), &n);
    assert!(a.contains("m=audio 40000 RTP/AVP 0 127\r\n"));
    assert!(a.contains("a=fmtp:127 0-15\r\n"));
}

#[test]
fn grandstream_offer_pcma_first() {
    let offer = "
v=0
o=200 8000 8000 IN IP4 192.168.0.160
s=SIP Call
c=IN IP4 192.168.0.160
t=0 0
m=audio 5004 RTP/AVP 8 0 18 9 97 101
a=rtpmap:8 PCMA/8000
a=rtpmap:0 PCMU/8000
a=rtpmap:18 G729/8000
a=fmtp:18 annexb=no
a=rtpmap:9 G722/8000
a=rtpmap:97 iLBC/8000
a=fmtp:97 mode=20
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-15
a=ptime:20
a=sendrecv
";
    let n = negotiate(&parse_remote(&crlf(offer)).unwrap(), &[]).unwrap();
    assert_eq!(n.codec, Codec::Pcma);
    assert_eq!(n.te_pt(), Some(101));
}

#[test]
fn baresip_offer_many_codecs_opus_first() {
    let offer = "
v=0
o=- 2890844526 2890844526 IN IP4 127.0.0.1
s=-
c=IN IP4 127.0.0.1
t=0 0
m=audio 10040 RTP/AVP 96 9 0 8 102 101
b=AS:128
a=rtpmap:96 opus/48000/2
a=fmtp:96 stereo=1;sprop-stereo=1
a=rtpmap:9 G722/8000
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:102 telephone-event/48000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-15
a=rtcp-rsize
a=ptime:20
a=sendrecv
a=label:1
a=ssrc:3735928559 cname:baresip@127.0.0.1
";
    let r = parse_remote(&crlf(offer)).unwrap();
    assert_eq!(r.formats[0].encoding, "opus");
    assert_eq!(r.formats[0].channels, Some(2));
    assert_eq!(r.formats[0].codec(), None);
    assert_eq!(
        r.telephone_event.as_ref().unwrap().pt,
        101,
        "the 8000 Hz one"
    );
    let n = negotiate(&r, &[]).unwrap();
    assert_eq!(n.codec, Codec::Pcmu);
    assert_eq!(n.remote_rtp, Some("127.0.0.1:10040".parse().unwrap()));
}

#[test]
fn sipp_default_pcmu_only_without_telephone_event() {
    let offer = "
v=0
o=user1 53655765 2353687637 IN IP4 127.0.0.1
s=-
c=IN IP4 127.0.0.1
t=0 0
m=audio 6000 RTP/AVP 0
a=rtpmap:0 PCMU/8000
";
    let r = parse_remote(&crlf(offer)).unwrap();
    assert!(r.telephone_event.is_none());
    let n = negotiate(&r, &[]).unwrap();
    assert_eq!(n.te_pt(), None);
    let a = build_answer(&local(), &n);
    assert!(a.contains("m=audio 40000 RTP/AVP 0\r\n"));
    assert!(!a.contains("telephone-event"));
    assert!(!a.contains("fmtp"));
}

#[test]
fn telephone_event_at_pt_96() {
    let offer = "
v=0
o=user1 1 1 IN IP4 127.0.0.1
s=-
c=IN IP4 127.0.0.1
t=0 0
m=audio 6000 RTP/AVP 0 96
a=rtpmap:0 PCMU/8000
a=rtpmap:96 telephone-event/8000
a=fmtp:96 0-16
";
    let n = negotiate(&parse_remote(&crlf(offer)).unwrap(), &[]).unwrap();
    assert_eq!(n.te_pt(), Some(96));
    assert_eq!(
        n.telephone_event.as_ref().unwrap().fmtp.as_deref(),
        Some("0-16")
    );
    let a = build_answer(&local(), &n);
    assert!(a.contains("m=audio 40000 RTP/AVP 0 96\r\n"));
    assert!(
        a.contains("a=fmtp:96 0-15\r\n"),
        "we declare what we understand"
    );
}

#[test]
fn ipv6_offer_and_answer() {
    let offer = "
v=0
o=- 5 5 IN IP6 2001:db8::10
s=-
c=IN IP6 2001:db8::10
t=0 0
m=audio 7078 RTP/AVP 8 101
a=rtpmap:8 PCMA/8000
a=rtpmap:101 telephone-event/8000
";
    let r = parse_remote(&crlf(offer)).unwrap();
    assert_eq!(r.rtp_addr(), Some("[2001:db8::10]:7078".parse().unwrap()));
    let n = negotiate(&r, &[]).unwrap();
    let l = LocalMedia {
        addr: "2001:db8::1".parse().unwrap(),
        port: 30_000,
        session_id: 9,
        session_version: 3,
    };
    let a = build_answer(&l, &n);
    assert!(a.contains("o=selfprov 9 3 IN IP6 2001:db8::1\r\n"), "{a}");
    assert!(a.contains("c=IN IP6 2001:db8::1\r\n"));
    assert!(a.contains("m=audio 30000 RTP/AVP 8 101\r\n"));
}

fn with_direction(attr: &str, conn: &str) -> Vec<u8> {
    crlf(&format!(
        "v=0\no=- 1 2 IN IP4 10.0.0.5\ns=-\nc=IN IP4 {conn}\nt=0 0\nm=audio 4000 RTP/AVP 0 101\n\
         a=rtpmap:101 telephone-event/8000\n{attr}\n"
    ))
}

#[test]
fn hold_offers() {
    // a=sendonly: on hold, we answer recvonly and keep the address (they may send music).
    let r = parse_remote(&with_direction("a=sendonly", "10.0.0.5")).unwrap();
    assert!(r.on_hold);
    let n = negotiate(&r, &[]).unwrap();
    assert_eq!(n.direction, Direction::RecvOnly);
    assert!(!n.we_send());
    assert!(build_answer(&local(), &n).contains("a=recvonly\r\n"));

    // a=inactive -> inactive.
    let r = parse_remote(&with_direction("a=inactive", "10.0.0.5")).unwrap();
    assert!(r.on_hold);
    assert_eq!(negotiate(&r, &[]).unwrap().direction, Direction::Inactive);

    // a=recvonly (they only listen): not hold; we answer sendonly.
    let r = parse_remote(&with_direction("a=recvonly", "10.0.0.5")).unwrap();
    assert!(!r.on_hold);
    let n = negotiate(&r, &[]).unwrap();
    assert_eq!(n.direction, Direction::SendOnly);
    assert!(n.we_send());

    // RFC 2543 hold: c=0.0.0.0, no direction attribute.
    let r = parse_remote(&with_direction("a=ptime:20", "0.0.0.0")).unwrap();
    assert!(r.on_hold);
    assert_eq!(r.rtp_addr(), None);
    let n = negotiate(&r, &[]).unwrap();
    assert_eq!(n.remote_rtp, None);
    assert!(!n.we_send());

    // Session-level direction applies when the media has none; media-level overrides it.
    let sess = crlf(
        "v=0\no=- 1 2 IN IP4 10.0.0.5\ns=-\nc=IN IP4 10.0.0.5\nt=0 0\na=sendonly\n\
         m=audio 4000 RTP/AVP 0\n",
    );
    assert_eq!(parse_remote(&sess).unwrap().direction, Direction::SendOnly);
    let both = crlf(
        "v=0\no=- 1 2 IN IP4 10.0.0.5\ns=-\nc=IN IP4 10.0.0.5\nt=0 0\na=sendonly\n\
         m=audio 4000 RTP/AVP 0\na=sendrecv\n",
    );
    assert_eq!(parse_remote(&both).unwrap().direction, Direction::SendRecv);
}

#[test]
fn g729_only_is_not_acceptable() {
    let offer = "
v=0
o=- 1 1 IN IP4 10.0.0.7
s=-
c=IN IP4 10.0.0.7
t=0 0
m=audio 4000 RTP/AVP 18 101
a=rtpmap:18 G729/8000
a=rtpmap:101 telephone-event/8000
";
    let err = negotiate(&parse_remote(&crlf(offer)).unwrap(), &[]).unwrap_err();
    assert_eq!(err, SdpError::NoCommonCodec);
    assert_eq!(err.sip_status(), 488);
    // A PCMA-only offer with a PCMU-only configuration fails the same way.
    let offer = crlf(
        "v=0\no=- 1 1 IN IP4 10.0.0.7\ns=-\nc=IN IP4 10.0.0.7\nt=0 0\nm=audio 4000 RTP/AVP 8\n",
    );
    assert_eq!(
        negotiate(&parse_remote(&offer).unwrap(), &[Codec::Pcmu]),
        Err(SdpError::NoCommonCodec)
    );
}

#[test]
fn video_and_audio_answer_keeps_m_line_count() {
    let offer = "
v=0
o=- 7 7 IN IP4 10.0.0.8
s=-
c=IN IP4 10.0.0.8
t=0 0
m=video 5006 RTP/AVP 96 97
a=rtpmap:96 H264/90000
a=fmtp:96 profile-level-id=42801F
a=rtpmap:97 VP8/90000
m=audio 5004 RTP/AVP 0 8 101
a=rtpmap:101 telephone-event/8000
m=application 5070 UDP/BFCP *
a=floorctrl:c-only
";
    let r = parse_remote(&crlf(offer)).unwrap();
    assert_eq!(r.media_lines.len(), 3);
    assert_eq!(r.audio_index, 1);
    assert_eq!(r.port, 5004);
    let n = negotiate(&r, &[]).unwrap();
    let a = build_answer(&local(), &n);
    let m_lines: Vec<&str> = a.lines().filter(|l| l.starts_with("m=")).collect();
    assert_eq!(
        m_lines,
        [
            "m=video 0 RTP/AVP 96",
            "m=audio 40000 RTP/AVP 0 101",
            "m=application 0 UDP/BFCP *"
        ]
    );
}

#[test]
fn srtp_only_is_refused_but_best_effort_srtp_is_answered_with_rtp() {
    let savp_only = crlf(
        "v=0\no=- 1 1 IN IP4 10.0.0.9\ns=-\nc=IN IP4 10.0.0.9\nt=0 0\nm=audio 4000 RTP/SAVP 0\n\
         a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz\n",
    );
    let err = negotiate(&parse_remote(&savp_only).unwrap(), &[]).unwrap_err();
    assert_eq!(err, SdpError::UnsupportedTransport("RTP/SAVP".into()));
    assert_eq!(err.sip_status(), 488);

    let both = crlf(
        "v=0\no=- 1 1 IN IP4 10.0.0.9\ns=-\nc=IN IP4 10.0.0.9\nt=0 0\nm=audio 4000 RTP/SAVP 0\n\
         a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz\n\
         m=audio 4002 RTP/AVP 0\n",
    );
    let r = parse_remote(&both).unwrap();
    assert_eq!((r.audio_index, r.port), (1, 4002));
    let a = build_answer(&local(), &negotiate(&r, &[]).unwrap());
    let m_lines: Vec<&str> = a.lines().filter(|l| l.starts_with("m=")).collect();
    assert_eq!(m_lines, ["m=audio 0 RTP/SAVP 0", "m=audio 40000 RTP/AVP 0"]);
}

#[test]
fn rejected_audio_stream_is_answered_with_port_zero() {
    let offer =
        crlf("v=0\no=- 1 1 IN IP4 10.0.0.9\ns=-\nc=IN IP4 10.0.0.9\nt=0 0\nm=audio 0 RTP/AVP 0\n");
    let r = parse_remote(&offer).unwrap();
    assert_eq!(r.rtp_addr(), None);
    let n = negotiate(&r, &[]).unwrap();
    assert!(n.rejected);
    assert_eq!(n.remote_rtp, None);
    let a = build_answer(&local(), &n);
    assert!(a.contains("m=audio 0 RTP/AVP 0\r\n"), "{a}");
    assert!(!a.contains("a=sendrecv"));
}

#[test]
fn ptime_rules() {
    let mk = |attrs: &str| {
        crlf(&format!(
            "v=0\no=- 1 1 IN IP4 10.0.0.9\ns=-\nc=IN IP4 10.0.0.9\nt=0 0\nm=audio 4000 RTP/AVP 0\n{attrs}\n"
        ))
    };
    let ptime = |attrs: &str| {
        negotiate(&parse_remote(&mk(attrs)).unwrap(), &[])
            .unwrap()
            .ptime
    };
    assert_eq!(ptime("a=ptime:30"), 30);
    assert_eq!(ptime("a=ptime:10"), 10);
    assert_eq!(ptime("a=ptime:60"), 60);
    assert_eq!(ptime("a=ptime:20.0"), 20);
    assert_eq!(ptime("a=ptime:25"), 20, "not a multiple of 10");
    assert_eq!(ptime("a=ptime:5"), 20);
    assert_eq!(ptime("a=ptime:80"), 20);
    assert_eq!(ptime("a=ptime:abc"), 20);
    assert_eq!(ptime("a=ptime:40\na=maxptime:30"), 30, "capped by maxptime");
    assert_eq!(
        negotiate(&parse_remote(&mk("a=ptime:30")).unwrap(), &[])
            .unwrap()
            .samples_per_packet(),
        240
    );
}

#[test]
fn missing_s_line_is_accepted_after_normalisation() {
    // RFC 4566 requires s=; the sdp crate refuses the body; we repair it (documented).
    let offer = crlf("v=0\no=- 1 1 IN IP4 10.0.0.9\nc=IN IP4 10.0.0.9\nt=0 0\nm=audio 4000 RTP/AVP 0 101\na=rtpmap:101 telephone-event/8000\n");
    let r = parse_remote(&offer).unwrap();
    assert_eq!(r.port, 4000);
    assert_eq!(r.telephone_event.unwrap().pt, 101);
    // Session lines out of order and a missing t= are repaired too.
    let offer = crlf("v=0\no=- 1 1 IN IP4 10.0.0.9\ns=-\na=sendonly\nc=IN IP4 10.0.0.9\nm=audio 4000 RTP/AVP 8\n");
    let r = parse_remote(&offer).unwrap();
    assert_eq!(r.direction, Direction::SendOnly);
    assert_eq!(r.formats[0].codec(), Some(Codec::Pcma));
    // LF-only line ends.
    let lf = YEALINK.trim_start().replace("\r\n", "\n");
    assert_eq!(parse_remote(lf.as_bytes()).unwrap().port, 11796);
}

#[test]
fn refused_bodies() {
    assert!(matches!(
        parse_remote(b""),
        Err(SdpError::Malformed(_)) | Err(SdpError::NoAudio)
    ));
    let e = parse_remote(b"hello world").unwrap_err();
    assert_eq!(e.sip_status(), 400, "{e:?}");
    let no_audio = crlf(
        "v=0\no=- 1 1 IN IP4 10.0.0.9\ns=-\nc=IN IP4 10.0.0.9\nt=0 0\nm=video 4000 RTP/AVP 96\n",
    );
    assert_eq!(parse_remote(&no_audio), Err(SdpError::NoAudio));
    let no_conn = crlf("v=0\no=- 1 1 IN IP4 10.0.0.9\ns=-\nt=0 0\nm=audio 4000 RTP/AVP 0\n");
    assert_eq!(parse_remote(&no_conn), Err(SdpError::NoConnection));
    let host = crlf("v=0\no=- 1 1 IN IP4 pbx.example.com\ns=-\nc=IN IP4 pbx.example.com\nt=0 0\nm=audio 4000 RTP/AVP 0\n");
    assert!(matches!(parse_remote(&host), Err(SdpError::BadAddress(_))));
}

#[test]
fn late_offer_round_trip() {
    let l = local();
    let offer = build_offer(&l, &[Codec::Pcmu, Codec::Pcma], 101, 20);
    assert_eq!(
        offer,
        "v=0\r\no=selfprov 4242 1 IN IP4 192.0.2.10\r\ns=selfprov\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\n\
         m=audio 40000 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n\
         a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=ptime:20\r\na=sendrecv\r\n"
    );
    // The phone answers (in the ACK) with PCMA and our telephone-event PT.
    let answer = crlf(
        "v=0\no=- 3 3 IN IP4 10.0.0.20\ns=-\nc=IN IP4 10.0.0.20\nt=0 0\nm=audio 5555 RTP/AVP 8 101\n\
         a=rtpmap:8 PCMA/8000\na=rtpmap:101 telephone-event/8000\na=fmtp:101 0-15\na=ptime:20\n",
    );
    let n = negotiate_answer(
        &parse_remote(&answer).unwrap(),
        &[Codec::Pcmu, Codec::Pcma],
        101,
    )
    .unwrap();
    assert_eq!(n.codec, Codec::Pcma);
    assert_eq!(n.te_pt(), Some(101));
    assert_eq!(n.remote_rtp, Some("10.0.0.20:5555".parse().unwrap()));
    assert_eq!(n.direction, Direction::SendRecv);
    // An answer with a codec we did not offer is an error.
    let bad = crlf(
        "v=0\no=- 3 3 IN IP4 10.0.0.20\ns=-\nc=IN IP4 10.0.0.20\nt=0 0\nm=audio 5555 RTP/AVP 18\n",
    );
    assert_eq!(
        negotiate_answer(&parse_remote(&bad).unwrap(), &[Codec::Pcmu], 101),
        Err(SdpError::NoCommonCodec)
    );
    // No telephone-event offered (te_pt outside 96..=127): none in the offer.
    let plain = build_offer(&l, &[Codec::Pcmu], 0, 25);
    assert!(plain.contains("m=audio 40000 RTP/AVP 0\r\n"));
    assert!(plain.contains("a=ptime:20\r\n"));
    assert!(!plain.contains("telephone-event"));
}

#[test]
fn mutated_offers_never_panic() {
    use rand::{Rng, SeedableRng};
    let base = crlf(YEALINK);
    let mut rng = rand::rngs::StdRng::seed_from_u64(3264);
    let alphabet = b"=:/ \r\n0123456789avmcotsb.-IPN";
    for _ in 0..3000 {
        let mut b = base.clone();
        for _ in 0..rng.random_range(1..8) {
            let i = rng.random_range(0..b.len());
            match rng.random_range(0..3) {
                0 => b[i] = alphabet[rng.random_range(0..alphabet.len())],
                1 => {
                    b.remove(i);
                }
                _ => b.insert(i, rng.random()),
            }
        }
        if let Ok(r) = parse_remote(&b) {
            if let Ok(n) = negotiate(&r, &[]) {
                let _ = build_answer(&local(), &n);
            }
        }
    }
}
