// Child processes for the benchmark: servers (pinned to the server core), load generators
// (pinned to the load core), RSS and CPU readings from /proc.
import { spawn, spawnSync } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync, readSync, statSync, truncateSync } from 'node:fs';

export const PIN = { enabled: true, server: '0', load: '1' };

export function hasCommand(cmd, args = ['--version']) {
  const r = spawnSync(cmd, args, { stdio: 'ignore' });
  return !r.error;
}

export function pinned(core, cmd, args) {
  return PIN.enabled ? ['taskset', ['-c', core, cmd, ...args]] : [cmd, args];
}

/**
 * Start a server that prints one JSON log line with "grpcAddress" when listening. Its
 * stdout (logs, decision log) keeps being drained and discarded; the last lines are kept
 * for error messages.
 */
export function startServer(name, cmd, args, { core = PIN.server, env = {}, timeoutMs = 30_000 } = {}) {
  const [c, a] = pinned(core, cmd, args);
  const child = spawn(c, a, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
  const tail = [];
  let partial = '';
  let bytes = 0;
  const keep = (line) => {
    tail.push(line);
    if (tail.length > 40) tail.shift();
  };
  return new Promise((resolve, reject) => {
    let settled = false;
    const timer = setTimeout(() => {
      if (settled) return;
      settled = true;
      child.kill('SIGKILL');
      reject(new Error(`${name}: not listening after ${timeoutMs} ms\n${tail.join('\n')}`));
    }, timeoutMs);
    const onLine = (line) => {
      keep(line);
      if (settled || !line.includes('grpcAddress')) return;
      try {
        const j = JSON.parse(line);
        if (!j.grpcAddress) return;
        settled = true;
        clearTimeout(timer);
        resolve(
          serverHandle(name, child, j, {
            /** The latest JSON log line holding `key`, if still in the tail. */
            lastJson: (key) => {
              for (let i = tail.length - 1; i >= 0; i--) {
                if (!tail[i].includes(key)) continue;
                try {
                  return JSON.parse(tail[i]);
                } catch {
                  /* partial */
                }
              }
              return undefined;
            },
            tail: () => tail.slice(),
            logBytes: () => bytes,
          }),
        );
      } catch {
        /* not JSON */
      }
    };
    child.stdout.on('data', (d) => {
      bytes += d.length;
      const s = partial + d.toString('utf8');
      const lines = s.split('\n');
      partial = lines.pop();
      if (partial.length > 65536) partial = partial.slice(-65536);
      // once listening, only the tail is needed: keep the last few lines cheaply
      for (const l of settled ? lines.slice(-5) : lines) onLine(l);
    });
    child.stderr.on('data', (d) => keep(`[stderr] ${d.toString('utf8').trimEnd()}`));
    child.on('exit', (code, sig) => {
      if (!settled) {
        settled = true;
        clearTimeout(timer);
        reject(new Error(`${name}: exited (${code ?? sig}) before listening\n${tail.join('\n')}`));
      }
    });
  });
}

/**
 * Start a server whose stdout/stderr go straight to a file (O_APPEND): a busy server's
 * decision log then never waits for a reader (a pipe drained by this process would stall
 * it whenever the load generator keeps this process off the CPU). The file is truncated
 * between measurements. Resolves when the JSON line with "grpcAddress" appears.
 */
export function startServerToFile(name, cmd, args, logPath, { core = PIN.server, timeoutMs = 30_000 } = {}) {
  const [c, a] = pinned(core, cmd, args);
  const fd = openSync(logPath, 'a');
  const child = spawn(c, a, { stdio: ['ignore', fd, fd] });
  closeSync(fd);
  const tail = (bytes = 16384) => {
    try {
      const size = statSync(logPath).size;
      const len = Math.min(size, bytes);
      const buf = Buffer.alloc(len);
      const f = openSync(logPath, 'r');
      readSync(f, buf, 0, len, size - len);
      closeSync(f);
      return buf.toString('utf8').split('\n').slice(1);
    } catch {
      return [];
    }
  };
  return new Promise((resolve, reject) => {
    const t0 = Date.now();
    let exited = false;
    child.on('exit', () => (exited = true));
    const poll = () => {
      const text = existsSync(logPath) ? readFileSync(logPath, 'utf8') : '';
      for (const line of text.split('\n')) {
        if (!line.includes('grpcAddress')) continue;
        try {
          const j = JSON.parse(line);
          if (j.grpcAddress) {
            return resolve(
              serverHandle(name, child, j, {
                logPath,
                tail: () => tail(),
                truncateLog: () => {
                  try {
                    truncateSync(logPath, 0);
                  } catch {
                    /* gone */
                  }
                },
              }),
            );
          }
        } catch {
          /* partial line */
        }
      }
      if (exited) return reject(new Error(`${name}: exited before listening\n${tail().slice(-30).join('\n')}`));
      if (Date.now() - t0 > timeoutMs) {
        child.kill('SIGKILL');
        return reject(new Error(`${name}: not listening after ${timeoutMs} ms\n${tail().slice(-30).join('\n')}`));
      }
      setTimeout(poll, 50);
    };
    poll();
  });
}

/** What both start functions resolve with: the process, its addresses, and `extra`. */
function serverHandle(name, child, listening, extra) {
  return { name, child, pid: child.pid, grpcAddress: listening.grpcAddress, httpAddress: listening.httpAddress, info: listening, stop: () => stopChild(child), ...extra };
}

export function stopChild(child) {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    const t = setTimeout(() => child.kill('SIGKILL'), 3000);
    child.once('exit', () => {
      clearTimeout(t);
      resolve();
    });
    child.kill('SIGTERM');
  });
}

/** Run a command to completion (pinned to the load core), collecting stdout. */
export function run(cmd, args, { core = PIN.load, timeoutMs = 15 * 60_000 } = {}) {
  const [c, a] = pinned(core, cmd, args);
  return new Promise((resolve, reject) => {
    const child = spawn(c, a, { stdio: ['ignore', 'pipe', 'pipe'] });
    const out = [];
    const err = [];
    const t = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.stdout.on('data', (d) => out.push(d));
    child.stderr.on('data', (d) => err.push(d));
    child.on('error', reject);
    child.on('exit', (code) => {
      clearTimeout(t);
      resolve({ code, stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8') });
    });
  });
}

/** VmRSS / VmHWM of a process, in MiB. */
export function memOf(pid) {
  const s = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (k) => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(s)?.[1] ?? NaN);
  return { rssMiB: kb('VmRSS') / 1024, hwmMiB: kb('VmHWM') / 1024 };
}

/** utime + stime of a process in seconds. */
export function cpuSecondsOf(pid) {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const rest = f.slice(f.lastIndexOf(')') + 2).split(' ');
  return (Number(rest[11]) + Number(rest[12])) / 100; // CLK_TCK is 100 on Linux
}

/** Aggregate CPU counters (for steal time: how noisy the machine was). */
export function cpuTimes() {
  const line = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  const [user, nice, system, idle, iowait, irq, softirq, steal] = line;
  return { total: line.reduce((a, b) => a + b, 0), steal: steal ?? 0, idle: idle + (iowait ?? 0), busy: user + nice + system + (irq ?? 0) + (softirq ?? 0) };
}

export function machineInfo() {
  let cpu = '';
  try {
    cpu = /model name\s*:\s*(.*)/.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? '';
  } catch {
    /* not Linux */
  }
  return cpu;
}
