import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.alp.gateway.v3.CancelOrdersRequest;
import com.alp.gateway.v3.CancelOrdersResponse;
import com.alp.gateway.v3.CancelStatus;
import com.alp.gateway.v3.LimitOrder;
import com.alp.gateway.v3.ListPairsRequest;
import com.alp.gateway.v3.ListPairsResponse;
import com.alp.gateway.v3.MarketDataServiceGrpc;
import com.alp.gateway.v3.OrderIdList;
import com.alp.gateway.v3.OrderSide;
import com.alp.gateway.v3.PlaceOrderRequest;
import com.alp.gateway.v3.PlaceOrderResponse;
import com.alp.gateway.v3.StreamServiceGrpc;
import com.alp.gateway.v3.StreamTradesRequest;
import com.alp.gateway.v3.StreamTradesResponse;
import com.alp.gateway.v3.TradeEvent;
import com.alp.gateway.v3.TradingServiceGrpc;
import com.google.protobuf.Any;
import com.google.rpc.ErrorInfo;
import com.google.rpc.Status;
import io.grpc.ManagedChannel;
import io.grpc.ManagedChannelBuilder;
import io.grpc.Metadata;
import io.grpc.StatusRuntimeException;
import io.grpc.stub.MetadataUtils;
import java.math.BigDecimal;
import java.util.Iterator;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/** A Java service's view of the ALP gateway: the generated stubs, statuses and details. */
class GatewayClientTest {
  private static ManagedChannel channel;
  private static Metadata account;

  @BeforeAll
  static void connect() {
    channel = ManagedChannelBuilder.forTarget(System.getProperty("gateway.target")).usePlaintext().build();
    account = new Metadata();
    account.put(Metadata.Key.of("x-alp-account", Metadata.ASCII_STRING_MARSHALLER), "demo");
  }

  @AfterAll
  static void close() throws InterruptedException {
    channel.shutdownNow().awaitTermination(5, TimeUnit.SECONDS);
  }

  private static TradingServiceGrpc.TradingServiceBlockingStub trading() {
    return TradingServiceGrpc.newBlockingStub(channel)
        .withInterceptors(MetadataUtils.newAttachHeadersInterceptor(account))
        .withDeadlineAfter(10, TimeUnit.SECONDS);
  }

  @Test
  void listsPairsWithExactDecimals() {
    ListPairsResponse pairs = MarketDataServiceGrpc.newBlockingStub(channel)
        .withDeadlineAfter(10, TimeUnit.SECONDS).listPairs(ListPairsRequest.getDefaultInstance());
    assertFalse(pairs.getPairsList().isEmpty());
    assertTrue(new BigDecimal(pairs.getPairs(0).getMinimumOrderSize()).signum() > 0);
  }

  @Test
  void streamsTrades() {
    Iterator<StreamTradesResponse> stream = StreamServiceGrpc.newBlockingStub(channel)
        .withDeadlineAfter(60, TimeUnit.SECONDS)
        .streamTrades(StreamTradesRequest.newBuilder().addPairs("BTC_USDT").build());
    int seen = 0;
    while (seen < 5 && stream.hasNext()) {
      for (TradeEvent trade : stream.next().getTradesList()) {
        assertEquals("BTC_USDT", trade.getPair());
        assertTrue(new BigDecimal(trade.getPrice()).signum() > 0);
        seen++;
      }
    }
    assertTrue(seen >= 5, "saw " + seen + " trades");
  }

  @Test
  void placesAndCancelsAnOrder() {
    PlaceOrderResponse placed = trading().placeOrder(PlaceOrderRequest.newBuilder()
        .setPair("BTC_USDT").setSide(OrderSide.ORDER_SIDE_BUY)
        .setLimit(LimitOrder.newBuilder().setBaseAmount("0.01").setLimitPrice("1000.00"))
        .build());
    assertTrue(placed.getOrderId() > 0);
    CancelOrdersResponse cancelled = trading().cancelOrders(CancelOrdersRequest.newBuilder()
        .setOrderIds(OrderIdList.newBuilder().addIds(placed.getOrderId())).build());
    assertEquals(CancelStatus.CANCEL_STATUS_CANCELLED,
        cancelled.getOutcomesOrThrow(placed.getOrderId()).getStatus());
  }

  @Test
  void insufficientFundsCarriesErrorInfo() throws Exception {
    StatusRuntimeException error = assertThrows(StatusRuntimeException.class,
        () -> trading().placeOrder(PlaceOrderRequest.newBuilder()
            .setPair("BTC_USDT").setSide(OrderSide.ORDER_SIDE_BUY)
            .setLimit(LimitOrder.newBuilder().setBaseAmount("90").setLimitPrice("90000.00"))
            .build()));
    assertEquals(io.grpc.Status.Code.FAILED_PRECONDITION, error.getStatus().getCode());
    byte[] raw = error.getTrailers().get(
        Metadata.Key.of("grpc-status-details-bin", Metadata.BINARY_BYTE_MARSHALLER));
    assertNotNull(raw);
    ErrorInfo info = null;
    for (Any detail : Status.parseFrom(raw).getDetailsList()) {
      if (detail.is(ErrorInfo.class)) {
        info = detail.unpack(ErrorInfo.class);
      }
    }
    assertNotNull(info);
    assertEquals("alp.com", info.getDomain());
    assertEquals("2002", info.getReason());
  }
}
