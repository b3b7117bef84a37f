#!/usr/bin/env python3
"""Generates src/md5lanes/kernels.rs: MD5's 64 steps unrolled, for one scalar stream
and for several streams in SIMD lanes (SSE2: 4 lanes, AVX2: 8 lanes). The code is
generated because each step has its own constants, message word and rotation, and
the vector kernels must inline every intrinsic into a function compiled for that
instruction set. Run: scripts/gen_md5_lanes.py > src/md5lanes/kernels.rs && cargo fmt
"""
import math

K = [int(abs(math.sin(i + 1)) * 2**32) & 0xFFFFFFFF for i in range(64)]
S = [7, 12, 17, 22] * 4 + [5, 9, 14, 20] * 4 + [4, 11, 16, 23] * 4 + [6, 10, 15, 21] * 4


def g_of(i):
    if i < 16:
        return i
    if i < 32:
        return (5 * i + 1) % 16
    if i < 48:
        return (3 * i + 5) % 16
    return (7 * i) % 16


def steps(fmt_f, fmt_step):
    regs = ["a", "b", "c", "d"]
    out = []
    for i in range(64):
        a, b, c, d = regs
        out.append(fmt_step(a, b, fmt_f(i // 16, b, c, d), K[i], g_of(i), S[i]))
        regs = [d, a, b, c]
    return out


def scalar():
    # The step is a = b + rotl(a + K + m + F(b, c, d), s). Everything but the part of
    # F that needs b (computed by the step before) is added first, off the chain of
    # dependent operations that bounds MD5's speed. G's two halves are disjoint bits,
    # so they add.
    def f(r, b, c, d):
        return [("", f"({d} ^ ({b} & ({c} ^ {d})))"), (f".wrapping_add(!{d} & {c})", f"({d} & {b})"),
                ("", f"({b} ^ ({c} ^ {d}))"), ("", f"({c} ^ ({b} | !{d}))")][r]

    def st(a, b, fx, k, g, s):
        pre, last = fx
        return (f"        {a} = {b}.wrapping_add({a}.wrapping_add(0x{k:08x}).wrapping_add(m[{g}]){pre}"
                f".wrapping_add{last}.rotate_left({s}));")

    body = "\n".join(steps(f, st))
    return f'''/// MD5's compression function on one 64-byte block.
#[inline]
pub fn compress(state: &mut [u32; 4], block: &[u8; 64]) {{
    let mut m = [0u32; 16];
    for (i, w) in m.iter_mut().enumerate() {{
        *w = u32::from_le_bytes([block[4 * i], block[4 * i + 1], block[4 * i + 2], block[4 * i + 3]]);
    }}
    let [mut a, mut b, mut c, mut d] = *state;
{body}
    state[0] = state[0].wrapping_add(a);
    state[1] = state[1].wrapping_add(b);
    state[2] = state[2].wrapping_add(c);
    state[3] = state[3].wrapping_add(d);
}}
'''


def vector(name, feature, lanes, ty, p):
    """p: intrinsic prefix (_mm or _mm256); ty: the vector type."""
    si = "si128" if p == "_mm" else "si256"

    def f(r, b, c, d):
        x, a_, o, an = f"{p}_xor_{si}", f"{p}_and_{si}", f"{p}_or_{si}", f"{p}_andnot_{si}"
        return [(None, f"{x}({d}, {a_}({b}, {x}({c}, {d})))"), (f"{an}({d}, {c})", f"{a_}({d}, {b})"),
                (None, f"{x}({b}, {x}({c}, {d}))"), (None, f"{x}({c}, {o}({b}, {x}({d}, ones)))")][r]

    def st(a, b, fx, k, g, s):
        add = f"{p}_add_epi32"
        pre, last = fx
        t = f"{add}({a}, {add}({p}_set1_epi32(0x{k:08x}u32 as i32), m[{g}]))"
        if pre:
            t = f"{add}({t}, {pre})"
        t = f"{add}({t}, {last})"
        return (f"        let t = {t};\n"
                f"        {a} = {add}({b}, {p}_or_{si}({p}_slli_epi32::<{s}>(t), {p}_srli_epi32::<{32 - s}>(t)));")

    body = "\n".join(steps(f, st))
    return f'''/// MD5 on {lanes} independent streams at once, one per {feature} lane: `blocks`
/// 64-byte blocks of each `data[i]` advance `state[i]`.
///
/// A `data[i]` shorter than `blocks * 64` bytes panics (bounds-checked reads).
///
/// # Safety
/// The CPU must support {feature}.
#[target_feature(enable = "{feature}")]
pub(crate) unsafe fn {name}(state: &mut [[u32; 4]; {lanes}], data: &[&[u8]; {lanes}], blocks: usize) {{
    let mut cols = [[0u32; {lanes}]; 4];
    for (l, st) in state.iter().enumerate() {{
        for (col, v) in cols.iter_mut().zip(st) {{
            col[l] = *v;
        }}
    }}
    // SAFETY: each load reads {lanes} u32 from an array of {lanes} u32 (unaligned loads).
    let mut sa = unsafe {{ {p}_loadu_{si}(cols[0].as_ptr() as *const {ty}) }};
    // SAFETY: as above.
    let mut sb = unsafe {{ {p}_loadu_{si}(cols[1].as_ptr() as *const {ty}) }};
    // SAFETY: as above.
    let mut sc = unsafe {{ {p}_loadu_{si}(cols[2].as_ptr() as *const {ty}) }};
    // SAFETY: as above.
    let mut sd = unsafe {{ {p}_loadu_{si}(cols[3].as_ptr() as *const {ty}) }};
    let ones = {p}_set1_epi32(-1);
    let mut m = [{p}_setzero_{si}(); 16];
    for blk in 0..blocks {{
        for (g, mv) in m.iter_mut().enumerate() {{
            let mut w = [0u32; {lanes}];
            for (l, x) in w.iter_mut().enumerate() {{
                let at = blk * 64 + 4 * g;
                let b = &data[l][at..at + 4];
                *x = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            }}
            // SAFETY: reads {lanes} u32 from an array of {lanes} u32 (an unaligned load).
            *mv = unsafe {{ {p}_loadu_{si}(w.as_ptr() as *const {ty}) }};
        }}
        let (mut a, mut b, mut c, mut d) = (sa, sb, sc, sd);
{body}
        sa = {p}_add_epi32(sa, a);
        sb = {p}_add_epi32(sb, b);
        sc = {p}_add_epi32(sc, c);
        sd = {p}_add_epi32(sd, d);
    }}
    for (j, v) in [sa, sb, sc, sd].into_iter().enumerate() {{
        let mut w = [0u32; {lanes}];
        // SAFETY: writes {lanes} u32 into an array of {lanes} u32 (an unaligned store).
        unsafe {{ {p}_storeu_{si}(w.as_mut_ptr() as *mut {ty}, v) }};
        for (l, x) in w.iter().enumerate() {{
            state[l][j] = *x;
        }}
    }}
}}
'''


print("""// @generated by scripts/gen_md5_lanes.py: do not edit by hand.
//! MD5 compression: one stream (scalar) and several streams in SIMD lanes.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;
""")
print(scalar())
print('#[cfg(target_arch = "x86_64")]')
print(vector("compress_x4_sse2", "sse2", 4, "__m128i", "_mm"))
print('#[cfg(target_arch = "x86_64")]')
print(vector("compress_x8_avx2", "avx2", 8, "__m256i", "_mm256"))
