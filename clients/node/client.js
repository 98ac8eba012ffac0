// Node consumer of the ALP gRPC gateway: lists pairs, streams trades until N were seen, places and
// cancels an order, and checks an error status with its google.rpc details.
// Usage: node client.js TARGET PROTO_DIR GOOGLE_RPC_PROTO_DIR [TRADES]
'use strict';
const path = require('path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');
const protobuf = require('protobufjs');

const [target, protoDir, rpcDir, tradesArg] = process.argv.slice(2);
const wanted = Number(tradesArg || 5);
const files = ['market_data', 'account', 'trading', 'stream'].map((f) => `alp/v3/${f}.proto`);
const definition = protoLoader.loadSync(files, {
  includeDirs: [protoDir], keepCase: true, longs: String, enums: String, defaults: true, oneofs: true,
});
const alp = grpc.loadPackageDefinition(definition).alp.v3;
const creds = grpc.credentials.createInsecure();
const market = new alp.MarketDataService(target, creds);
const trading = new alp.TradingService(target, creds);
const streams = new alp.StreamService(target, creds);
const meta = new grpc.Metadata();
meta.set('x-alp-account', 'demo');

const rpcRoot = new protobuf.Root();
rpcRoot.resolvePath = (origin, file) => path.join(rpcDir, file);
rpcRoot.loadSync(['google/rpc/status.proto', 'google/rpc/error_details.proto']);
const Status = rpcRoot.lookupType('google.rpc.Status');

function details(err) {
  const raw = err.metadata && err.metadata.get('grpc-status-details-bin')[0];
  if (!raw) return {};
  const status = Status.decode(raw);
  const out = {};
  for (const any of status.details) {
    const name = (any.type_url || any.typeUrl).split('/').pop();
    out[name.split('.').pop()] = rpcRoot.lookupType(name).decode(any.value);
  }
  return out;
}

function call(client, method, request) {
  return new Promise((resolve, reject) => {
    client[method](request, meta, { deadline: Date.now() + 10000 }, (err, reply) =>
      (err ? reject(err) : resolve(reply)));
  });
}

function fail(message) {
  console.error(`FAIL ${message}`);
  process.exit(1);
}

async function main() {
  const pairs = await call(market, 'ListPairs', {});
  if (!pairs.pairs.length) fail('no pairs');
  console.log(`OK ListPairs ${pairs.pairs.length} pairs`);

  await new Promise((resolve, reject) => {
    const stream = streams.StreamTrades({ pairs: ['BTC_USDT'] }, meta);
    let seen = 0;
    stream.on('data', (msg) => {
      for (const t of msg.trades) {
        if (t.pair !== 'BTC_USDT' || !/^\d+(\.\d+)?$/.test(t.price)) reject(new Error(`bad trade ${JSON.stringify(t)}`));
        seen += 1;
      }
      if (seen >= wanted) { stream.cancel(); console.log(`OK StreamTrades ${seen} trades`); resolve(); }
    });
    stream.on('error', (err) => { if (err.code !== grpc.status.CANCELLED) reject(err); });
  });

  const placed = await call(trading, 'PlaceOrder', {
    pair: 'BTC_USDT', side: 'ORDER_SIDE_BUY', limit: { base_amount: '0.01', limit_price: '1000.00' },
  });
  console.log(`OK PlaceOrder ${placed.order_id}`);
  const cancelled = await call(trading, 'CancelOrders', { order_ids: { ids: [placed.order_id] } });
  // protobufjs renders int64 map keys as raw bytes (a known protobufjs limitation), so check the
  // single outcome by value rather than by key.
  const outcomes = Object.values(cancelled.outcomes);
  const outcome = outcomes[0];
  if (outcomes.length !== 1 || outcome.status !== 'CANCEL_STATUS_CANCELLED') fail(`cancel outcome ${JSON.stringify(cancelled)}`);
  console.log(`OK CancelOrders ${outcome.raw}`);

  try {
    await call(trading, 'PlaceOrder', {
      pair: 'BTC_USDT', side: 'ORDER_SIDE_BUY', limit: { base_amount: '90', limit_price: '90000.00' },
    });
    fail('expected an error');
  } catch (err) {
    const d = details(err);
    if (err.code !== grpc.status.FAILED_PRECONDITION || !d.ErrorInfo || d.ErrorInfo.reason !== '2002') {
      fail(`unexpected error ${err.code} ${JSON.stringify(d)}`);
    }
    console.log(`OK error FAILED_PRECONDITION ErrorInfo ${d.ErrorInfo.domain}/${d.ErrorInfo.reason}`);
  }
  console.log('ALL OK');
}

main().then(() => process.exit(0), (err) => fail(err.stack || String(err)));
