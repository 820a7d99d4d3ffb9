import { type Message, Publishes, Subscribe } from '@ktransport/broker';
import { toStandardJsonSchema } from '@valibot/to-json-schema';
import * as v from 'valibot';
import { z } from 'zod';

/** A zod 4 schema: carries Standard JSON Schema itself. */
export const Order = z.object({ id: z.string().min(1), total: z.number().nonnegative(), lines: z.array(z.object({ sku: z.string(), qty: z.number().int() })) });

/** A valibot schema made Standard JSON Schema by @valibot/to-json-schema. */
const ShipmentSchema = v.object({ orderId: v.pipe(v.string(), v.minLength(1)), carrier: v.optional(v.string()) });
export const Shipment = toStandardJsonSchema(ShipmentSchema);
export type Shipment = v.InferOutput<typeof ShipmentSchema>;

/** A recursive zod schema: its JSON Schema refers to itself. */
interface Node {
  name: string;
  children: Node[];
}
export const Tree: z.ZodType<Node> = z.object({
  name: z.string(),
  get children() {
    return z.array(Tree);
  },
});

export class OrderService {
  @Subscribe('orders/created', { schema: Order, group: 'billing', deadLetter: 'orders/dead' })
  created(_message: Message<z.infer<typeof Order>>): void {}

  @Subscribe('orders/+/shipped', { schema: Shipment })
  shipped(_message: Message<Shipment>): void {}

  @Subscribe('audit/#', { codec: 'text' })
  audit(_message: Message<string>): void {}
}

export class OrderRepository {
  @Publishes('orders/created', { schema: Order, summary: 'An order was placed' })
  create(): void {}

  @Publishes('orders/eu/shipped', { schema: Shipment, codec: 'msgpack', description: 'Sent by the *EU* warehouse.' })
  ship(): void {}

  @Publishes('trees', { schema: Tree })
  tree(): void {}
}
