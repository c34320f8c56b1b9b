/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * proc: process facts for the identity cache (daemon/layers): exec and exit of every
 * process, and successful opens of files named *.wasm (filtered in the kernel), which is
 * how a host that loads a WebAssembly module (Node.js node:wasi, any embedder) is seen.
 *
 * The one header shared by bpf/proc.bpf.c and daemon/probes/proc_probe.cc: fixed-width
 * fields only; the C++ side checks the layout.
 */
#ifndef ISOTRACE_BPF_PROC_H
#define ISOTRACE_BPF_PROC_H

#define PROC_MAX_PATH 4096 /* PATH_MAX: a longer path is counted, not reported */
#define PROC_COMM_LEN 16

enum proc_fact_kind {
  PROC_EXEC = 1,      /* the process replaced its program (key unchanged) */
  PROC_EXIT = 2,      /* the thread-group leader exited */
  PROC_WASM_OPEN = 3, /* read-only open/openat/openat2 of a file named "*.wasm" succeeded */
};

enum proc_counter {
  PROC_CNT_RINGBUF_DROPS = 0, /* ring buffer full: event lost */
  /* 1 and 2 counted what the entry-side suffix test lost (a path of PROC_MAX_PATH bytes or
   * more, a full in-flight table). The test now runs at exit on the opened file, which
   * loses neither; the slots stay so that the metric series keep their meaning (0). */
  PROC_CNT_PATH_TOO_LONG = 1,
  PROC_CNT_INFLIGHT_FULL = 2,
  PROC_CNT_MAX = 3,
};

struct proc_fact {
  __u64 ts_ns;         /* bpf_ktime_get_ns() */
  __u64 proc_start_ns; /* group leader's start_time: with tgid, the process key */
  __u32 tgid;
  __u32 tid;
  __s32 ret;           /* PROC_WASM_OPEN: the returned fd */
  __u16 path_len;      /* PROC_WASM_OPEN: bytes in path, NUL excluded */
  __u8 kind;           /* enum proc_fact_kind */
  __u8 path_resolved;  /* PROC_WASM_OPEN: 1 = path rebuilt from the opened file (absolute
                        * in the process's mount namespace), 0 = the file's name only
                        * (deeper than the walk reaches) */
  char comm[PROC_COMM_LEN];
  /* The parent (real_parent) when the event fired: a process that is gone before user
   * space reads /proc still has a live parent whose sandbox it shares. */
  __u64 parent_start_ns;
  __u32 ppid;
  __u32 mnt_ns;        /* PROC_WASM_OPEN: the process's mount namespace (inode number) */
  char path[];         /* PROC_WASM_OPEN only: PROC_MAX_PATH bytes */
};
#define PROC_EVENT_HEADER_SIZE 64

#endif /* ISOTRACE_BPF_PROC_H */
