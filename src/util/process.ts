/** Whether a process with this pid exists (signal 0: nothing is sent; a pid we may not signal counts as gone). */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
