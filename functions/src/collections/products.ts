import type { DocumentReference, Firestore, FirestoreDataConverter, QueryDocumentSnapshot } from "firebase-admin/firestore";
import { toCount } from "./firestoreValues";

export const PRODUCTS = "products";

/** `products/{sku}`: written by the operator (console) or the seed script; the backend only moves stock. */
export interface Product {
  sku: string;
  name: string;
  /** Units on hand. Finalizing a payment decrements it. */
  stock: number;
  /** Units held by orders in status `reserved`. available = stock − reserved. */
  reserved: number;
}

export interface StockLevel {
  stock: number;
  reserved: number;
}

export const productConverter: FirestoreDataConverter<Product> = {
  toFirestore(product) {
    const { sku: _sku, ...data } = product as Product;
    return data;
  },
  fromFirestore(snapshot: QueryDocumentSnapshot): Product {
    const data = snapshot.data();
    return {
      sku: snapshot.id,
      name: typeof data.name === "string" ? data.name : snapshot.id,
      stock: toCount(data.stock),
      reserved: toCount(data.reserved),
    };
  },
};

export function productRef(db: Firestore, sku: string): DocumentReference<Product> {
  return db.collection(PRODUCTS).doc(sku).withConverter(productConverter);
}
