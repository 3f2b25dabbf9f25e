// Loaded into each component by `npm run bench:profile` (NODE_OPTIONS=--import …):
// SIGUSR2 starts the V8 CPU profiler, the next SIGUSR2 stops it and writes
// <HELLO_PROFILE_DIR>/<pid>.cpuprofile, so a profile covers one measured phase only.
import { Session } from "node:inspector";
import { writeFileSync } from "node:fs";
import path from "node:path";

const dir = process.env.HELLO_PROFILE_DIR;
const session = new Session();
session.connect();
const post = (method, params) =>
  new Promise((resolve, reject) => session.post(method, params, (error, result) => (error ? reject(error) : resolve(result))));
let running = false;
process.on("SIGUSR2", () => {
  void (async () => {
    if (!running) {
      running = true;
      await post("Profiler.enable");
      await post("Profiler.setSamplingInterval", { interval: 200 });
      await post("Profiler.start");
    } else {
      running = false;
      const { profile } = await post("Profiler.stop");
      writeFileSync(path.join(dir, `${process.pid}.cpuprofile`), JSON.stringify(profile));
    }
  })();
});
