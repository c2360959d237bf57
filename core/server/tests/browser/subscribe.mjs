// MQTT.js in headless Chromium: connect to a fogg WebSocket listener,
// subscribe, and wait for one message. Driven by core/server/tests/websocket.rs.
//
//   node subscribe.mjs URL TOPIC PROTOCOL_VERSION
//
// Prints "SUBSCRIBED <granted>" once the SUBACK is in, then
// "MESSAGE <topic> <payload>" and exits 0; anything else exits 1.
// CHROMIUM overrides the browser binary (default /usr/bin/chromium, Debian's).

import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

// The browser bundle, by path: the package's exports map does not list it.
const bundle = fileURLToPath(new URL('./node_modules/mqtt/dist/mqtt.min.js', import.meta.url));
const [url, topic, version] = process.argv.slice(2);
if (!url || !topic) {
  console.error('usage: node subscribe.mjs URL TOPIC [PROTOCOL_VERSION]');
  process.exit(2);
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  // Playwright adds --headless and a fresh --user-data-dir of its own.
  args: [
    '--no-sandbox',
    '--disable-gpu',
    '--disable-quic',
    '--no-first-run',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
  ],
});
let status = 1;
try {
  const page = await browser.newPage();
  page.on('console', (msg) => console.error(`[page] ${msg.text()}`));
  await page.exposeFunction('report', (line) => console.log(line));
  // The browser bundle defines the global `mqtt`, as a <script> tag would.
  await page.addScriptTag({ path: bundle });
  const message = await page.evaluate(
    ({ url, topic, version }) =>
      new Promise((resolve, reject) => {
        const client = mqtt.connect(url, {
          clientId: `browser-${Math.random().toString(16).slice(2)}`,
          protocolVersion: version,
          reconnectPeriod: 0,
          connectTimeout: 10000,
        });
        client.on('connect', () => {
          client.subscribe(topic, { qos: 1 }, (err, granted) => {
            if (err) reject(`subscribe: ${err}`);
            else window.report(`SUBSCRIBED ${JSON.stringify(granted)}`);
          });
        });
        client.on('message', (t, payload) => {
          resolve(`${t} ${new TextDecoder().decode(payload)}`);
          client.end();
        });
        client.on('error', (e) => reject(`mqtt error: ${e}`));
        client.on('close', () => reject('connection closed'));
        setTimeout(() => reject('no message within 30 s'), 30000);
      }),
    { url, topic, version: Number(version || 4) },
  );
  console.log(`MESSAGE ${message}`);
  status = 0;
} catch (e) {
  console.error(`FAILED: ${e}`);
} finally {
  await browser.close();
}
process.exit(status);
