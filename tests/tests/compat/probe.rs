//! The route-cache probe: a tiny proxy-wasm module (ABI 0.2.1), encoded byte by byte here so
//! that it needs no wasm toolchain, that asks an Envoy the two questions the filter's
//! route-cache handling rests on:
//!
//! 1. does the host have the `clear_route_cache` foreign function (`proxy_call_foreign_function`
//!    answers `Ok`, 0) or not (`NotFound`, 1)?
//! 2. when a filter rewrites the routing header, does the router follow the new value — with
//!    and without a call to `clear_route_cache`?
//!
//! On every request it replaces `x-upstream-cluster` with `v2` and, by the path's first
//! letter, `/clear…` calls `clear_route_cache`, `/nosuch…` calls a foreign function no Envoy
//! has (the control: it must answer `NotFound`), anything else calls nothing. The status of
//! the call comes back in the response header `x-probe-ffi` (two decimal digits, `--` when
//! nothing was called). The client sends `x-upstream-cluster: v1`, so `x-served-by` says which
//! route the router used: `v1` the one chosen before the filter ran, `v2` the rewritten one.
//!
//! Before rewriting anything the probe also reads the `xds.cluster_name` attribute (the upstream
//! cluster of the route Envoy has resolved so far) and returns it in `x-probe-route` (`-` when
//! there is none): it tells whether the route was already chosen when the filter ran, which
//! is what makes clearing the route cache necessary at all. It reads the property again when
//! the response headers arrive (`x-probe-route-after`), where the route is surely resolved: the
//! control that the property can be read at all.

/// `proxy_call_foreign_function` statuses (proxy-wasm `WasmResult`).
pub const FFI_OK: u32 = 0;
pub const FFI_NOT_FOUND: u32 = 1;

pub const CLEAR_PATH: &str = "/clear";
pub const NOSUCH_PATH: &str = "/nosuch";
pub const AUTO_PATH: &str = "/auto";
pub const RESULT_HEADER: &str = "x-probe-ffi";
pub const ROUTE_HEADER: &str = "x-probe-route";
/// The same property read in `on_response_headers`, when the router has surely resolved the
/// route: the control that the property is readable at all.
pub const ROUTE_AFTER_HEADER: &str = "x-probe-route-after";
/// What the client sends, and what the probe rewrites it to.
pub const HEADER: &str = "x-upstream-cluster";
pub const CLIENT_VALUE: &str = "v1";
pub const REWRITTEN_VALUE: &str = "v2";

const NO_SUCH_FUNCTION: &str = "subset_router_compat_no_such_function";
/// The `xds.cluster_name` attribute (path parts separated by NUL): the cluster of the route the
/// stream has resolved, as the stream info holds it. (The bare `cluster_name` property answered
/// NotFound on Envoy 1.40 even once the response had arrived.)
const PROPERTY: &str = "xds\0cluster_name";

// Linear memory layout (one 64 KiB page).
const A_CLEAR: i32 = 16; // "clear_route_cache"
const A_HEADER: i32 = 48; // "x-upstream-cluster"
const A_VALUE: i32 = 80; // "v2"
const A_PATH: i32 = 96; // ":path"
const A_RESULT_HEADER: i32 = 112; // "x-probe-ffi"
const A_CODE: i32 = 128; // two ASCII digits
const A_NOSUCH: i32 = 144; // NO_SUCH_FUNCTION
const A_PROPERTY: i32 = 192; // PROPERTY
const A_ROUTE_HEADER: i32 = 208; // "x-probe-route"
const A_DASH: i32 = 224; // "-"
const A_ROUTE_PTR: i32 = 1040; // cluster_name value pointer, size
const A_ROUTE_LEN: i32 = 1044;
const A_AFTER_PTR: i32 = 1048; // cluster_name when the response arrives
const A_AFTER_LEN: i32 = 1052;
const A_AFTER_HEADER: i32 = 232; // "x-probe-route-after"
const A_RET: i32 = 1024; // value pointer, value size, foreign-call results
const HEAP: i32 = 4096; // bump allocator, reset on every request

const I32: u8 = 0x7f;

fn uleb(mut v: u64, out: &mut Vec<u8>) {
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

fn sleb(mut v: i64, out: &mut Vec<u8>) {
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        let done = (v == 0 && b & 0x40 == 0) || (v == -1 && b & 0x40 != 0);
        out.push(if done { b } else { b | 0x80 });
        if done {
            return;
        }
    }
}

fn name(s: &str, out: &mut Vec<u8>) {
    uleb(s.len() as u64, out);
    out.extend_from_slice(s.as_bytes());
}

fn section(id: u8, body: Vec<u8>, out: &mut Vec<u8>) {
    out.push(id);
    uleb(body.len() as u64, out);
    out.extend(body);
}

fn vec_of(items: Vec<Vec<u8>>) -> Vec<u8> {
    let mut out = Vec::new();
    uleb(items.len() as u64, &mut out);
    for i in items {
        out.extend(i);
    }
    out
}

/// A function body: the instructions (code) of a straight-line Wasm function.
struct Code(Vec<u8>);

impl Code {
    fn new() -> Self {
        Code(Vec::new())
    }
    fn i32c(mut self, v: i32) -> Self {
        self.0.push(0x41);
        sleb(v as i64, &mut self.0);
        self
    }
    fn op(mut self, op: u8) -> Self {
        self.0.push(op);
        self
    }
    fn op_idx(mut self, op: u8, idx: u32) -> Self {
        self.0.push(op);
        uleb(idx as u64, &mut self.0);
        self
    }
    fn mem(mut self, op: u8, align: u32, offset: u32) -> Self {
        self.0.push(op);
        uleb(align as u64, &mut self.0);
        uleb(offset as u64, &mut self.0);
        self
    }
    fn call(self, f: u32) -> Self {
        self.op_idx(0x10, f)
    }
    fn local_get(self, i: u32) -> Self {
        self.op_idx(0x20, i)
    }
    fn local_set(self, i: u32) -> Self {
        self.op_idx(0x21, i)
    }
    fn global_get(self, i: u32) -> Self {
        self.op_idx(0x23, i)
    }
    fn global_set(self, i: u32) -> Self {
        self.op_idx(0x24, i)
    }
    fn if_(mut self) -> Self {
        self.0.extend([0x04, 0x40]);
        self
    }
    fn end(self) -> Self {
        self.op(0x0b)
    }
    fn drop_(self) -> Self {
        self.op(0x1a)
    }
    /// The encoded body: locals (`n` i32s) then the code, closed by `end`.
    fn body(self, i32_locals: u32) -> Vec<u8> {
        let mut b = Vec::new();
        if i32_locals == 0 {
            b.push(0);
        } else {
            b.push(1);
            uleb(i32_locals as u64, &mut b);
            b.push(I32);
        }
        b.extend(self.0);
        b.push(0x0b);
        let mut out = Vec::new();
        uleb(b.len() as u64, &mut out);
        out.extend(b);
        out
    }
}

fn functype(params: usize, results: usize) -> Vec<u8> {
    let mut t = vec![0x60];
    uleb(params as u64, &mut t);
    t.extend(std::iter::repeat_n(I32, params));
    uleb(results as u64, &mut t);
    t.extend(std::iter::repeat_n(I32, results));
    t
}

/// The probe module's bytes.
pub fn module() -> Vec<u8> {
    // Types.
    const T_FFI: u32 = 0; // (i32 x6) -> i32
    const T_HDR: u32 = 1; // (i32 x5) -> i32
    const T_VOID: u32 = 2; // () -> ()
    const T_ALLOC: u32 = 3; // (i32) -> i32
    const T_CTX: u32 = 4; // (i32 i32) -> ()
    const T_BOOL2: u32 = 5; // (i32 i32) -> i32
    const T_HEADERS: u32 = 6; // (i32 i32 i32) -> i32
    const T_STORE: u32 = 7; // (i32) -> ()
    const T_PROP: u32 = 8; // (i32 x4) -> i32
    let types = vec_of(vec![
        functype(6, 1),
        functype(5, 1),
        functype(0, 0),
        functype(1, 1),
        functype(2, 0),
        functype(2, 1),
        functype(3, 1),
        functype(1, 0),
        functype(4, 1),
    ]);
    // Imports: functions 0..4.
    const F_FOREIGN: u32 = 0;
    const F_REPLACE: u32 = 1;
    const F_GET: u32 = 2;
    const F_ADD: u32 = 3;
    const F_PROPERTY: u32 = 4;
    let import = |field: &str, ty: u32| {
        let mut i = Vec::new();
        name("env", &mut i);
        name(field, &mut i);
        i.push(0x00);
        uleb(ty as u64, &mut i);
        i
    };
    let imports = vec_of(vec![
        import("proxy_call_foreign_function", T_FFI),
        import("proxy_replace_header_map_value", T_HDR),
        import("proxy_get_header_map_value", T_HDR),
        import("proxy_add_header_map_value", T_HDR),
        import("proxy_get_property", T_PROP),
    ]);
    // Defined functions: 5..12.
    const F_ABI: u32 = 5;
    const F_MALLOC: u32 = 6;
    const F_CONTEXT: u32 = 7;
    const F_VM_START: u32 = 8;
    const F_CONFIGURE: u32 = 9;
    const F_REQUEST: u32 = 10;
    const F_RESPONSE: u32 = 11;
    const F_STORE: u32 = 12;
    let defined = [
        T_VOID, T_ALLOC, T_CTX, T_BOOL2, T_BOOL2, T_HEADERS, T_HEADERS, T_STORE,
    ];
    let mut functions = Vec::new();
    uleb(defined.len() as u64, &mut functions);
    for t in defined {
        uleb(t as u64, &mut functions);
    }
    // Memory: one page.
    let memory = vec![1, 0x00, 1];
    // Global 0: the bump pointer (mutable i32).
    let mut global = vec![1, I32, 1];
    global.extend(Code::new().i32c(HEAP).end().0);
    // Exports.
    let export = |n: &str, kind: u8, idx: u32| {
        let mut e = Vec::new();
        name(n, &mut e);
        e.push(kind);
        uleb(idx as u64, &mut e);
        e
    };
    let exports = vec_of(vec![
        export("memory", 0x02, 0),
        export("proxy_abi_version_0_2_1", 0x00, F_ABI),
        export("malloc", 0x00, F_MALLOC),
        export("proxy_on_memory_allocate", 0x00, F_MALLOC),
        export("proxy_on_context_create", 0x00, F_CONTEXT),
        export("proxy_on_vm_start", 0x00, F_VM_START),
        export("proxy_on_configure", 0x00, F_CONFIGURE),
        export("proxy_on_request_headers", 0x00, F_REQUEST),
        export("proxy_on_response_headers", 0x00, F_RESPONSE),
    ]);

    // i32.load (align 2), i32.load8_u, i32.store, i32.store8; arithmetic.
    const LOAD: u8 = 0x28;
    const LOAD8U: u8 = 0x2d;
    const STORE: u8 = 0x36;
    const STORE8: u8 = 0x3a;
    const ADD: u8 = 0x6a;
    const AND: u8 = 0x71;
    const EQ: u8 = 0x46;
    const DIVU: u8 = 0x6e;
    const REMU: u8 = 0x70;

    let foreign_call = |addr: i32, len: usize| {
        Code::new()
            .i32c(addr)
            .i32c(len as i32)
            .i32c(0)
            .i32c(0)
            .i32c(A_RET + 8)
            .i32c(A_RET + 12)
            .call(F_FOREIGN)
            .call(F_STORE)
            .0
    };
    let mut request = Code::new()
        // Reset the heap, and the reported status to "--".
        .i32c(HEAP)
        .global_set(0)
        .i32c(A_CODE)
        .i32c(b'-' as i32)
        .mem(STORE8, 0, 0)
        .i32c(A_CODE + 1)
        .i32c(b'-' as i32)
        .mem(STORE8, 0, 0)
        // value pointer = 0 (then a failed read looks at byte 1: no mode).
        .i32c(A_RET)
        .i32c(0)
        .mem(STORE, 2, 0)
        // The route resolved so far: cluster_name, or "-".
        .i32c(A_ROUTE_PTR)
        .i32c(A_DASH)
        .mem(STORE, 2, 0)
        .i32c(A_ROUTE_LEN)
        .i32c(1)
        .mem(STORE, 2, 0)
        .i32c(A_PROPERTY)
        .i32c(PROPERTY.len() as i32)
        .i32c(A_ROUTE_PTR)
        .i32c(A_ROUTE_LEN)
        .call(F_PROPERTY)
        .drop_()
        .i32c(0)
        .i32c(A_PATH)
        .i32c(5)
        .i32c(A_RET)
        .i32c(A_RET + 4)
        .call(F_GET)
        .drop_()
        // mode = path[1]
        .i32c(A_RET)
        .mem(LOAD, 2, 0)
        .mem(LOAD8U, 0, 1)
        .local_set(3)
        // x-upstream-cluster: v2
        .i32c(0)
        .i32c(A_HEADER)
        .i32c(HEADER.len() as i32)
        .i32c(A_VALUE)
        .i32c(REWRITTEN_VALUE.len() as i32)
        .call(F_REPLACE)
        .drop_()
        .local_get(3)
        .i32c(b'c' as i32)
        .op(EQ)
        .if_();
    request
        .0
        .extend(foreign_call(A_CLEAR, "clear_route_cache".len()));
    request = request.end().local_get(3).i32c(b'n' as i32).op(EQ).if_();
    request
        .0
        .extend(foreign_call(A_NOSUCH, NO_SUCH_FUNCTION.len()));
    let request = request.end().i32c(0);

    let response = Code::new()
        .i32c(A_AFTER_PTR)
        .i32c(A_DASH)
        .mem(STORE, 2, 0)
        .i32c(A_AFTER_LEN)
        .i32c(1)
        .mem(STORE, 2, 0)
        .i32c(A_PROPERTY)
        .i32c(PROPERTY.len() as i32)
        .i32c(A_AFTER_PTR)
        .i32c(A_AFTER_LEN)
        .call(F_PROPERTY)
        .drop_()
        .i32c(2)
        .i32c(A_AFTER_HEADER)
        .i32c(ROUTE_AFTER_HEADER.len() as i32)
        .i32c(A_AFTER_PTR)
        .mem(LOAD, 2, 0)
        .i32c(A_AFTER_LEN)
        .mem(LOAD, 2, 0)
        .call(F_ADD)
        .drop_()
        .i32c(2) // response headers
        .i32c(A_RESULT_HEADER)
        .i32c(RESULT_HEADER.len() as i32)
        .i32c(A_CODE)
        .i32c(2)
        .call(F_ADD)
        .drop_()
        .i32c(2)
        .i32c(A_ROUTE_HEADER)
        .i32c(ROUTE_HEADER.len() as i32)
        .i32c(A_ROUTE_PTR)
        .mem(LOAD, 2, 0)
        .i32c(A_ROUTE_LEN)
        .mem(LOAD, 2, 0)
        .call(F_ADD)
        .drop_()
        .i32c(0);
    // Two decimal digits of the status at A_CODE.
    let store = Code::new()
        .i32c(A_CODE)
        .local_get(0)
        .i32c(10)
        .op(DIVU)
        .i32c(b'0' as i32)
        .op(ADD)
        .mem(STORE8, 0, 0)
        .i32c(A_CODE + 1)
        .local_get(0)
        .i32c(10)
        .op(REMU)
        .i32c(b'0' as i32)
        .op(ADD)
        .mem(STORE8, 0, 0);
    // malloc(size): returns the bump pointer, advances it by size rounded up to 8.
    let malloc = Code::new()
        .global_get(0)
        .global_get(0)
        .local_get(0)
        .op(ADD)
        .i32c(7)
        .op(ADD)
        .i32c(-8)
        .op(AND)
        .global_set(0);
    let code = vec_of(vec![
        Code::new().body(0),         // proxy_abi_version_0_2_1
        malloc.body(0),              // malloc / proxy_on_memory_allocate
        Code::new().body(0),         // proxy_on_context_create
        Code::new().i32c(1).body(0), // proxy_on_vm_start: true
        Code::new().i32c(1).body(0), // proxy_on_configure: true
        request.body(1),             // proxy_on_request_headers: Continue
        response.body(0),            // proxy_on_response_headers: Continue
        store.body(0),
    ]);
    let segment = |addr: i32, bytes: &str| {
        let mut s = vec![0x00];
        s.extend(Code::new().i32c(addr).end().0);
        uleb(bytes.len() as u64, &mut s);
        s.extend_from_slice(bytes.as_bytes());
        s
    };
    let data = vec_of(vec![
        segment(A_CLEAR, "clear_route_cache"),
        segment(A_HEADER, HEADER),
        segment(A_VALUE, REWRITTEN_VALUE),
        segment(A_PATH, ":path"),
        segment(A_RESULT_HEADER, RESULT_HEADER),
        segment(A_NOSUCH, NO_SUCH_FUNCTION),
        segment(A_PROPERTY, PROPERTY),
        segment(A_ROUTE_HEADER, ROUTE_HEADER),
        segment(A_DASH, "-"),
        segment(A_AFTER_HEADER, ROUTE_AFTER_HEADER),
    ]);

    let mut m = b"\0asm".to_vec();
    m.extend([1, 0, 0, 0]);
    section(1, types, &mut m);
    section(2, imports, &mut m);
    section(3, functions, &mut m);
    section(5, memory, &mut m);
    section(6, global, &mut m);
    section(7, exports, &mut m);
    section(10, code, &mut m);
    section(11, data, &mut m);
    m
}
