// A minimal PNG encoder (8-bit RGB, no interlace) on node:zlib, for image strips
// in reports and for looking at generated clips.
import { deflateSync } from 'node:zlib';

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

function crc32(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (let i = 0; i < bytes.length; i++) c = CRC_TABLE[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function chunk(type: string, data: Uint8Array): Uint8Array {
  const out = new Uint8Array(12 + data.length);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, data.length);
  for (let i = 0; i < 4; i++) out[4 + i] = type.charCodeAt(i);
  out.set(data, 8);
  dv.setUint32(8 + data.length, crc32(out.subarray(4, 8 + data.length)));
  return out;
}

/** Encodes RGB bytes [height, width, 3] as a PNG file. */
export function encodePng(rgb: Uint8Array, width: number, height: number): Uint8Array {
  if (rgb.length !== width * height * 3) throw new RangeError(`encodePng: expected ${width * height * 3} bytes, got ${rgb.length}`);
  const raw = new Uint8Array(height * (1 + width * 3));
  for (let y = 0; y < height; y++) raw.set(rgb.subarray(y * width * 3, (y + 1) * width * 3), y * (1 + width * 3) + 1);
  const ihdr = new Uint8Array(13);
  const dv = new DataView(ihdr.buffer);
  dv.setUint32(0, width);
  dv.setUint32(4, height);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 2; // RGB
  const sig = new Uint8Array([137, 80, 78, 71, 13, 10, 26, 10]);
  const parts = [sig, chunk('IHDR', ihdr), chunk('IDAT', deflateSync(raw)), chunk('IEND', new Uint8Array(0))];
  const out = new Uint8Array(parts.reduce((a, p) => a + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/** Lays the frames of a clip [F, H, W, 3] side by side (scaled by an integer factor) as one RGB strip. */
export function frameStrip(frames: Uint8Array, shape: readonly number[], scale = 1, gap = 1): { rgb: Uint8Array; width: number; height: number } {
  const [F, H, W] = shape;
  const width = F * W * scale + (F - 1) * gap;
  const height = H * scale;
  const rgb = new Uint8Array(width * height * 3).fill(255);
  for (let f = 0; f < F; f++)
    for (let y = 0; y < height; y++)
      for (let x = 0; x < W * scale; x++) {
        const src = ((f * H + Math.floor(y / scale)) * W + Math.floor(x / scale)) * 3;
        const dst = (y * width + f * (W * scale + gap) + x) * 3;
        rgb[dst] = frames[src];
        rgb[dst + 1] = frames[src + 1];
        rgb[dst + 2] = frames[src + 2];
      }
  return { rgb, width, height };
}
