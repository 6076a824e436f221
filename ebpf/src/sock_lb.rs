//! Socket load balancing for ClusterIP (cgroup `connect4`, `sendmsg4`, `recvmsg4`,
//! `getpeername4`): a socket's service address is swapped for a backend once, when it
//! connects (or per datagram for unconnected UDP), so no packet is ever NATed; the reverse
//! map makes `recvmsg` and `getpeername` show the service address again. `sock_release`
//! drops a connected socket's reverse entry when it closes, so that connection churn does
//! not crowd live sockets' entries out of the LRU.

use aya_ebpf::{
    helpers::generated::{bpf_get_netns_cookie, bpf_get_socket_cookie, bpf_set_retval},
    macros::{cgroup_sock, cgroup_sock_addr},
    programs::{SockAddrContext, SockContext},
};
use skiff_ebpf_common::{LbEvent, ServiceKey, SockRevKey, SockRevValue};

use crate::{
    lb::{choose, mix64, service},
    maps::{SOCK_REV, count_flow, count_lb},
};

/// What a sock_addr program returns to let the call proceed.
const ALLOW: i32 = 1;
/// What it returns to fail the call (with the error set by `bpf_set_retval`).
const REJECT: i32 = 0;
const ECONNREFUSED: i32 = 111;

#[cgroup_sock_addr(connect4)]
pub fn sock_connect4(ctx: SockAddrContext) -> i32 {
    translate(&ctx)
}

#[cgroup_sock_addr(sendmsg4)]
pub fn sock_sendmsg4(ctx: SockAddrContext) -> i32 {
    translate(&ctx)
}

#[cgroup_sock_addr(recvmsg4)]
pub fn sock_recvmsg4(ctx: SockAddrContext) -> i32 {
    reverse(&ctx);
    ALLOW
}

#[cgroup_sock_addr(getpeername4)]
pub fn sock_getpeername4(ctx: SockAddrContext) -> i32 {
    reverse(&ctx);
    ALLOW
}

#[cgroup_sock(sock_release)]
pub fn sock_release(ctx: SockContext) -> i32 {
    release(&ctx);
    ALLOW
}

/// Removes the reverse entry of a socket connected to a backend (an unconnected UDP
/// socket's entries, one per backend it sent to, are left to the LRU).
#[inline(always)]
fn release(ctx: &SockContext) {
    let sk = ctx.sock;
    // SAFETY: `sk` is the context the kernel passed; these fields are readable in
    // sock_release.
    let (family, addr, port) = unsafe { ((*sk).family, (*sk).dst_ip4, (*sk).dst_port) };
    if family != AF_INET || addr == 0 {
        return;
    }
    let key = SockRevKey {
        // SAFETY: the helper takes the socket context, which is what `sk` is.
        cookie: unsafe { bpf_get_socket_cookie(sk.cast()) },
        addr,
        port,
        pad: 0,
    };
    let _ = SOCK_REV.remove(&key);
}

const AF_INET: u32 = 2;

/// Rewrites a service destination to a backend; refuses the call when the service has none.
#[inline(always)]
fn translate(ctx: &SockAddrContext) -> i32 {
    let sa = ctx.sock_addr;
    // SAFETY: `sa` is the context the kernel passed; these fields are readable in every
    // sock_addr hook.
    let (addr, port, proto) = unsafe { ((*sa).user_ip4, (*sa).user_port, (*sa).protocol) };
    let key = ServiceKey {
        addr,
        port: port as u16,
        proto: proto as u8,
        scope: 0,
    };
    let Some(svc) = service(&key) else {
        return ALLOW;
    };
    // SAFETY: the helper takes the sock_addr context, which is what `sa` is.
    let cookie = unsafe { bpf_get_socket_cookie(sa.cast()) };
    // SAFETY: as above. Asked for only by a service with session affinity.
    let netns = || unsafe { bpf_get_netns_cookie(sa.cast()) };
    let Some((id, backend)) = choose(&svc, netns, mix64(cookie)) else {
        count_lb(LbEvent::NoBackend);
        // SAFETY: `bpf_set_retval` only sets the error the rejected call returns.
        unsafe { bpf_set_retval(-ECONNREFUSED) };
        return REJECT;
    };
    let rev_key = SockRevKey {
        cookie,
        addr: backend.addr,
        port: backend.port,
        pad: 0,
    };
    let rev_value = SockRevValue {
        addr,
        port: port as u16,
        pad: 0,
    };
    let _ = SOCK_REV.insert(&rev_key, &rev_value, 0);
    count_flow(Some(&key), id, 1, 0);
    // SAFETY: `user_ip4` and `user_port` are writable in connect4 and sendmsg4.
    unsafe {
        (*sa).user_ip4 = backend.addr;
        (*sa).user_port = u32::from(backend.port);
    }
    count_lb(LbEvent::Translated);
    ALLOW
}

/// Shows the service address where the kernel would show the backend's.
#[inline(always)]
fn reverse(ctx: &SockAddrContext) {
    let sa = ctx.sock_addr;
    // SAFETY: as in `translate`; readable in recvmsg4 and getpeername4.
    let (addr, port) = unsafe { ((*sa).user_ip4, (*sa).user_port) };
    // SAFETY: the helper takes the sock_addr context.
    let cookie = unsafe { bpf_get_socket_cookie(sa.cast()) };
    let key = SockRevKey {
        cookie,
        addr,
        port: port as u16,
        pad: 0,
    };
    let Some(original) = SOCK_REV.get_ptr(&key) else {
        return;
    };
    // SAFETY: the pointer comes from a successful lookup; copied out at once.
    let original = unsafe { *original };
    // SAFETY: `user_ip4` and `user_port` are writable in recvmsg4 and getpeername4.
    unsafe {
        (*sa).user_ip4 = original.addr;
        (*sa).user_port = u32::from(original.port);
    }
    count_lb(LbEvent::ReverseTranslated);
}
