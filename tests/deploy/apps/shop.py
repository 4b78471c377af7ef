"""An app with every kind of trigger, for the deploy tests."""

import nubes

app = nubes.App("shop", version="1.2.0")


@app.get("/orders/{order_id}")
def order(ctx, order_id: int) -> dict:
    return {"id": order_id}


@app.post("/train")
def train(ctx) -> dict:
    return {"trained": True}


@app.on_object_created(prefix="raw/")
def landed(ctx, event) -> None:
    ctx.log.info("landed", key=event.key)


@app.on_message("orders")
def queued(ctx, message) -> None:
    ctx.log.info("order", body=message.text())


@app.on_schedule("nightly", cron="0 30 2 * * MON-FRI")
def nightly(ctx, event) -> None:
    ctx.log.info("nightly")
