// Command alpclient exercises the ALP gRPC gateway from Go, as a consuming service would:
// list pairs, stream trades until N were seen, subscribe to trades and tickers in one stream,
// place and cancel an order, and check that an invalid call fails with the documented status and
// google.rpc details. It prints one line per step and exits non-zero on the first failure.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	alpv3 "alpgateway/gen/go/alp/v3"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

func fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "FAIL "+format+"\n", args...)
	os.Exit(1)
}

// subscribe reads one Subscribe stream of two channels (trades and tickers of pair) until it has
// seen SUBSCRIBED for both topics and an event of each kind, printing a line for each.
func subscribe(ctx context.Context, streams alpv3.StreamServiceClient, pair string) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	stream, err := streams.Subscribe(ctx, &alpv3.SubscribeRequest{Topics: []*alpv3.Topic{
		{Channel: alpv3.Channel_CHANNEL_TRADES, Pair: pair},
		{Channel: alpv3.Channel_CHANNEL_TICKERS, Pair: pair},
	}})
	if err != nil {
		fail("Subscribe: %v", err)
	}
	subscribed := map[string]bool{}
	seen := map[string]bool{}
	events := 0
	for !(subscribed["trade."+pair] && subscribed["ticker.*"] && seen["trade"] && seen["ticker"]) {
		msg, err := stream.Recv()
		if err != nil {
			fail("Subscribe recv after %d events: %v", events, err)
		}
		for _, e := range msg.Events {
			events++
			switch ev := e.Event.(type) {
			case *alpv3.SubscribeEvent_Status:
				for _, topic := range ev.Status.Topics {
					if ev.Status.State == alpv3.StreamState_STREAM_STATE_SUBSCRIBED && !subscribed[topic] {
						subscribed[topic] = true
						fmt.Printf("OK Subscribe status %s %s\n", ev.Status.State, topic)
					}
				}
			case *alpv3.SubscribeEvent_Trade:
				if ev.Trade.Pair != pair || ev.Trade.Price == "" || ev.Trade.TradeId == 0 {
					fail("Subscribe: bad trade %v", ev.Trade)
				}
				if !seen["trade"] {
					seen["trade"] = true
					fmt.Printf("OK Subscribe trade %s id %d price %s\n", ev.Trade.Pair, ev.Trade.TradeId, ev.Trade.Price)
				}
			case *alpv3.SubscribeEvent_Ticker:
				if ev.Ticker.Pair != pair || ev.Ticker.Close == "" {
					fail("Subscribe: bad ticker %v", ev.Ticker)
				}
				if !seen["ticker"] {
					seen["ticker"] = true
					fmt.Printf("OK Subscribe ticker %s close %s\n", ev.Ticker.Pair, ev.Ticker.Close)
				}
			default:
				fail("Subscribe: unexpected event %T", ev)
			}
		}
	}
	fmt.Printf("OK Subscribe 2 channels, %d events\n", events)
}

func main() {
	target := flag.String("target", "127.0.0.1:50051", "gateway address")
	trades := flag.Int("trades", 5, "trades to receive from StreamTrades")
	pair := flag.String("pair", "BTC_USDT", "pair to stream")
	flag.Parse()

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	conn, err := grpc.DialContext(ctx, *target, grpc.WithInsecure(), grpc.WithBlock())
	if err != nil {
		fail("dial: %v", err)
	}
	defer conn.Close()
	ctx = metadata.AppendToOutgoingContext(ctx, "x-alp-account", "demo")

	market := alpv3.NewMarketDataServiceClient(conn)
	pairs, err := market.ListPairs(ctx, &alpv3.ListPairsRequest{})
	if err != nil || len(pairs.Pairs) == 0 {
		fail("ListPairs: %v", err)
	}
	fmt.Printf("OK ListPairs %d pairs, first %s min_size %s\n",
		len(pairs.Pairs), pairs.Pairs[0].Name, pairs.Pairs[0].MinimumOrderSize)

	streams := alpv3.NewStreamServiceClient(conn)
	stream, err := streams.StreamTrades(ctx, &alpv3.StreamTradesRequest{Pairs: []string{*pair}})
	if err != nil {
		fail("StreamTrades: %v", err)
	}
	seen := 0
	for seen < *trades {
		msg, err := stream.Recv()
		if err == io.EOF {
			fail("StreamTrades ended early after %d trades", seen)
		}
		if err != nil {
			fail("StreamTrades recv: %v", err)
		}
		for _, t := range msg.Trades {
			if t.Pair != *pair || t.Price == "" {
				fail("bad trade %v", t)
			}
			seen++
		}
	}
	fmt.Printf("OK StreamTrades %d trades\n", seen)

	subscribe(ctx, streams, *pair)

	trading := alpv3.NewTradingServiceClient(conn)
	placed, err := trading.PlaceOrder(ctx, &alpv3.PlaceOrderRequest{
		Pair: *pair,
		Side: alpv3.OrderSide_ORDER_SIDE_BUY,
		Order: &alpv3.PlaceOrderRequest_Limit{Limit: &alpv3.LimitOrder{
			BaseAmount: "0.01", LimitPrice: "1000.00",
		}},
	})
	if err != nil {
		fail("PlaceOrder: %v", err)
	}
	fmt.Printf("OK PlaceOrder id %d client_order_id %s\n", placed.OrderId, placed.ClientOrderId)

	cancelled, err := trading.CancelOrders(ctx, &alpv3.CancelOrdersRequest{
		Target: &alpv3.CancelOrdersRequest_OrderIds{OrderIds: &alpv3.OrderIdList{Ids: []int64{placed.OrderId}}},
	})
	if err != nil {
		fail("CancelOrders: %v", err)
	}
	outcome := cancelled.Outcomes[placed.OrderId]
	if outcome == nil || outcome.Status != alpv3.CancelStatus_CANCEL_STATUS_CANCELLED {
		fail("CancelOrders outcome %v", outcome)
	}
	fmt.Printf("OK CancelOrders %s\n", outcome.Raw)

	_, err = trading.PlaceOrder(ctx, &alpv3.PlaceOrderRequest{
		Pair: *pair,
		Side: alpv3.OrderSide_ORDER_SIDE_BUY,
		Order: &alpv3.PlaceOrderRequest_Limit{Limit: &alpv3.LimitOrder{
			BaseAmount: "90", LimitPrice: "90000.00",
		}},
	})
	st, _ := status.FromError(err)
	if st.Code() != codes.FailedPrecondition {
		fail("expected FAILED_PRECONDITION for insufficient funds, got %v", err)
	}
	var info *errdetails.ErrorInfo
	for _, d := range st.Details() {
		if e, ok := d.(*errdetails.ErrorInfo); ok {
			info = e
		}
	}
	if info == nil || info.Domain != "alp.com" || info.Reason != "2002" {
		fail("expected ErrorInfo alp.com/2002, got %v", st.Details())
	}
	fmt.Printf("OK error %s ErrorInfo %s/%s http_status=%s\n",
		st.Code(), info.Domain, info.Reason, info.Metadata["http_status"])

	_, err = trading.PlaceOrder(ctx, &alpv3.PlaceOrderRequest{Pair: "btc", Side: alpv3.OrderSide_ORDER_SIDE_BUY})
	st, _ = status.FromError(err)
	var bad *errdetails.BadRequest
	for _, d := range st.Details() {
		if b, ok := d.(*errdetails.BadRequest); ok {
			bad = b
		}
	}
	if st.Code() != codes.InvalidArgument || bad == nil || len(bad.FieldViolations) == 0 {
		fail("expected INVALID_ARGUMENT with BadRequest, got %v", err)
	}
	fmt.Printf("OK error %s BadRequest field %s\n", st.Code(), bad.FieldViolations[0].Field)
	fmt.Println("ALL OK")
}
