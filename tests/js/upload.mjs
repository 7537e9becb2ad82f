// Upload one file with tus-js-client (Node build) and print the outcome as one JSON line.
//
//   node upload.mjs ENDPOINT FILE CHUNK_SIZE [OPTIONS_JSON]
//
// OPTIONS_JSON (all optional):
//   stopAfter     upload.abort() from onChunkComplete once the server has acknowledged this many
//                 bytes, then exit 0 with "stopped": true (a clean stop between two PATCHes)
//   cutAfter      the PATCH that would carry byte number cutAfter sends the bytes before it, then
//                 its connection is destroyed mid-body and the process exits 0 with "stopped":
//                 true and "cutAt": cutAfter (a dropped connection; the server should keep them)
//   input         "stream" (default, a fs.ReadStream) or "buffer" (the whole file in memory)
//   urlStorage    path of a JSON file for FileUrlStorage; a previous upload of the same file
//                 found there is resumed (findPreviousUploads + resumeFromPreviousUpload)
//   uploadUrl, metadata, headers, retryDelays, parallelUploads, uploadDataDuringCreation,
//   uploadLengthDeferred, removeFingerprintOnSuccess: passed to tus.Upload as they are
//
// stdout: {"url": ..., "stopped": bool, "bytesAccepted": n, "resumed": bool, "offsets": [...]}
// where "offsets" lists bytesAccepted after each acknowledged chunk.
// On failure: exit 1 with {"error": message, "status": HTTP status or null} on stderr.

import { closeSync, createReadStream, openSync, readFileSync, readSync, statSync } from 'node:fs'
import process from 'node:process'
import { PassThrough } from 'node:stream'
import * as tus from 'tus-js-client'

const PASSTHROUGH = [
  'uploadUrl',
  'metadata',
  'headers',
  'retryDelays',
  'parallelUploads',
  'uploadDataDuringCreation',
  'uploadLengthDeferred',
  'removeFingerprintOnSuccess',
]

function fail(message, status = null) {
  process.stderr.write(`${JSON.stringify({ error: message, status })}\n`)
  process.exit(1)
}

function report(result) {
  // process.exit right after a plain write could cut a piped stdout short.
  process.stdout.write(`${JSON.stringify(result)}\n`, () => process.exit(0))
}

function readRange(path, start, end) {
  const buffer = Buffer.alloc(end - start)
  const fd = openSync(path, 'r')
  try {
    let done = 0
    while (done < buffer.length) {
      const n = readSync(fd, buffer, done, buffer.length - done, start + done)
      if (n === 0) throw new Error(`${path} ended at ${start + done}`)
      done += n
    }
  } finally {
    closeSync(fd)
  }
  return buffer
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms))
}

// Wraps the Node HTTP stack: the PATCH whose body would cross `cutAt` announces its full
// Content-Length, sends only the bytes before `cutAt`, waits until the kernel has them and then
// destroys the socket, like a network that fails mid-request.
class CuttingHttpStack {
  constructor(inner, filePath, cutAt, onCut) {
    this._inner = inner
    this._filePath = filePath
    this._cutAt = cutAt
    this._onCut = onCut
  }

  getName() {
    return 'CuttingHttpStack'
  }

  createRequest(method, url) {
    const request = this._inner.createRequest(method, url)
    if (method !== 'PATCH') return request
    const send = request.send.bind(request)
    request.send = (body) => {
      const offset = Number(request.getHeader('Upload-Offset'))
      const size = body?.size ?? 0
      if (!(offset < this._cutAt && this._cutAt < offset + size)) return send(body)
      if (typeof body.destroy === 'function') body.destroy()
      const partial = new PassThrough()
      partial.size = size
      const pending = send(partial)
      pending.catch(() => {})
      partial.write(readRange(this._filePath, offset, this._cutAt))
      this._cutWhenFlushed(request, size)
      return new Promise(() => {})
    }
    return request
  }

  async _cutWhenFlushed(request, size) {
    const deadline = Date.now() + 10_000
    for (;;) {
      const clientRequest = request.getUnderlyingObject()
      const socket = clientRequest?.socket
      const headerBytes = clientRequest?._header?.length ?? Number.POSITIVE_INFINITY
      const sent = socket ? socket.bytesWritten - headerBytes : 0
      if (socket && sent >= this._cutAt - Number(request.getHeader('Upload-Offset')) && socket.writableLength === 0) {
        clientRequest.destroy()
        this._onCut(size)
        return
      }
      if (Date.now() > deadline) fail('the bytes before the cut were not flushed within 10 s')
      await sleep(5)
    }
  }
}

const [endpoint, filePath, chunkSizeArg, optionsArg] = process.argv.slice(2)
if (!endpoint || !filePath || !chunkSizeArg) {
  fail('usage: node upload.mjs ENDPOINT FILE CHUNK_SIZE [OPTIONS_JSON]')
}
const chunkSize = Number(chunkSizeArg)
if (!Number.isSafeInteger(chunkSize) || chunkSize <= 0) {
  fail(`chunk size must be a positive integer, got ${chunkSizeArg}`)
}
let options = {}
try {
  options = optionsArg ? JSON.parse(optionsArg) : {}
} catch (err) {
  fail(`options are not JSON: ${err.message}`)
}

const input = options.input ?? 'stream'
if (input !== 'stream' && input !== 'buffer') fail(`unknown input kind ${input}`)
const file = input === 'buffer' ? readFileSync(filePath) : createReadStream(filePath)
const stopAfter = options.stopAfter ?? null
const cutAfter = options.cutAfter ?? null

const offsets = []
let bytesAccepted = 0
let resumed = false
let stopping = false

const uploadOptions = {
  endpoint,
  chunkSize,
  // Tests want a failure to surface at once instead of after tus-js-client's retry back-off.
  retryDelays: null,
  storeFingerprintForResuming: Boolean(options.urlStorage),
  ...Object.fromEntries(PASSTHROUGH.filter((key) => key in options).map((key) => [key, options[key]])),
  onChunkComplete(_chunk, accepted) {
    bytesAccepted = accepted
    offsets.push(accepted)
    if (stopAfter !== null && accepted >= stopAfter && !stopping) {
      stopping = true
      // abort(false): the upload stays on the server so that another run can resume it.
      upload.abort(false).then(
        () => report({ url: upload.url, stopped: true, bytesAccepted, resumed, offsets }),
        (err) => fail(`abort failed: ${err.message ?? err}`),
      )
    }
  },
  onSuccess() {
    report({ url: upload.url, stopped: false, bytesAccepted: statSync(filePath).size, resumed, offsets })
  },
  onError(err) {
    const status = err.originalResponse ? err.originalResponse.getStatus() : null
    fail(String(err.message ?? err), status)
  },
}
if (options.urlStorage) uploadOptions.urlStorage = new tus.FileUrlStorage(options.urlStorage)
if (cutAfter !== null) {
  uploadOptions.httpStack = new CuttingHttpStack(new tus.DefaultHttpStack(), filePath, cutAfter, () =>
    report({ url: upload.url, stopped: true, cutAt: cutAfter, bytesAccepted, resumed, offsets }),
  )
}

const upload = new tus.Upload(file, uploadOptions)

if (options.urlStorage && !options.uploadUrl) {
  const previous = await upload.findPreviousUploads()
  if (previous.length > 0) {
    upload.resumeFromPreviousUpload(previous[0])
    resumed = true
  }
}
if (options.uploadUrl) resumed = true
upload.start()
